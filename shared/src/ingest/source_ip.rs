//! Where a webhook came from: the address the connection came from, never a header a client
//! can write. API Gateway's request-context source IP under Lambda, the TCP peer under
//! `relay serve`. `CIO_ALLOWED_SOURCE_IPS` (a `verify::IpAllowList`) is checked against it.

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;

use crate::verify::canonical_ip;

/// The address a request came from, if the server knows it.
pub fn source_ip(extensions: &http::Extensions) -> Option<IpAddr> {
    if let Some(lambda_http::request::RequestContext::ApiGatewayV2(context)) =
        extensions.get::<lambda_http::request::RequestContext>()
    {
        return context.http.source_ip.as_deref().and_then(|ip| ip.parse().ok()).map(canonical_ip);
    }
    extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(peer)| canonical_ip(peer.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_source_is_the_connection_never_a_header() {
        let mut extensions = http::Extensions::new();
        assert_eq!(source_ip(&extensions), None);
        extensions.insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 5000))));
        assert_eq!(source_ip(&extensions), Some(ip("127.0.0.1")));
        let mut context = lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequestContext::default();
        context.http.source_ip = Some("35.188.196.183".into());
        extensions.insert(lambda_http::request::RequestContext::ApiGatewayV2(context));
        assert_eq!(source_ip(&extensions), Some(ip("35.188.196.183")), "API Gateway's view wins under Lambda");
    }
}

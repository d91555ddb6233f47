//! The baseline of `scripts/bench-cold-start`: a `lambda_http` function that answers every
//! request with 200 and does nothing else. Built by the script (not a workspace member) with
//! the workspace's release profile and its `lambda_http` and `tokio` dependencies.

use lambda_http::{Body, Error, Request, Response, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    run(service_fn(|_: Request| async { Ok::<_, Error>(Response::new(Body::from("ok"))) })).await
}

//! Writing HTML by hand, safely: every value goes through [`esc`]; the page frame carries
//! its own style (no stylesheet, script, font or image is fetched from anywhere).

use std::fmt::Write;

/// Text made safe inside HTML elements and quoted attributes.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A query-string value, percent-encoded (job keys hold `#`, which would end the URL).
pub fn url_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

const STYLE: &str = "
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:10px 20px;display:flex;gap:16px;align-items:baseline}
header a{color:#fff;text-decoration:none;font-weight:600}header span{color:#aab}
main{padding:16px 20px;max-width:1400px}
h2{font-size:15px;margin:22px 0 8px}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #e1e4ea}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #eceef2;vertical-align:top}
th{background:#f0f2f5;font-weight:600;font-size:12px;color:#4a5160}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
td:first-child{white-space:nowrap}
tr:hover td{background:#fafbfd}
.key{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}
.status{display:inline-block;padding:0 6px;border-radius:3px;font-size:11px;font-weight:700;color:#fff;background:#7a8290}
.DONE{background:#2f8f4e}.FAILED{background:#c23b32}.RETRYING{background:#c98a12}.RUNNING,.CLAIMED{background:#3a6fc4}.SKIPPED{background:#8a8f99}
form.filters{display:flex;gap:10px;flex-wrap:wrap;align-items:end;background:#fff;border:1px solid #e1e4ea;padding:10px}
form.filters label{display:flex;flex-direction:column;font-size:12px;color:#4a5160}
.text{white-space:pre-wrap;background:#fff;border:1px solid #e1e4ea;padding:12px;max-width:900px}
pre{background:#fff;border:1px solid #e1e4ea;padding:10px;overflow:auto;font-size:12px}
dl{display:grid;grid-template-columns:max-content auto;gap:3px 14px;background:#fff;border:1px solid #e1e4ea;padding:10px;margin:0}
dt{color:#4a5160}dd{margin:0}
.note{color:#6a7180;font-size:12px}
.charts{display:flex;gap:24px;flex-wrap:wrap}
.charts svg{background:#fff;border:1px solid #e1e4ea}
";

/// The whole page: `title`, a header naming where the records are, then `body`.
pub fn page(title: &str, place: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>{title}</title><style>{STYLE}</style></head><body><header><a href=\"/console\">mavera-relay</a>\
         <span>{place} · read only</span></header><main>{body}</main></body></html>",
        title = esc(title),
        place = esc(place),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_urls() {
        assert_eq!(
            esc(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
        assert_eq!(url_value("segment#m 1#r/é"), "segment%23m%201%23r%2F%C3%A9");
    }
}

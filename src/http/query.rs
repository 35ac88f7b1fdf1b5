//! `GET /api/query` (R4): parameters parsed and checked here, the page planned by the
//! QueryPlanner.

use std::fmt::Write as _;

use actix_web::{web, HttpRequest, HttpResponse};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use repricer_actors::error::ActorError;
use repricer_actors::query::catalog::Filter;
use repricer_actors::query::RunQuery;
use repricer_actors::telemetry::Traced;
use repricer_actors::time::{format_epoch, parse_instant};

use crate::http::admission::PermitBody;
use crate::http::error::ApiError;
use crate::http::{check_product_id, percent_decode_strict, ApiState};

/// Rows per page unless `pagesize` says otherwise.
pub const DEFAULT_PAGE_SIZE: u64 = 25;
/// Largest `pagesize`.
pub const MAX_PAGE_SIZE: u64 = 1000;
/// Largest `pageNumber` (10^12 rows at the largest page size).
pub const MAX_PAGE_NUMBER: u64 = 1_000_000_000;

/// The validated parameters, with the time bounds as the caller wrote them (for `Link`).
#[derive(Debug, Default, PartialEq)]
struct QueryParams {
    product_id: Option<String>,
    from: Option<(String, i64)>,
    to: Option<(String, i64)>,
    page_number: u64,
    page_size: u64,
}

fn bad(message: String) -> ApiError {
    ApiError::BadRequest(message)
}

/// The bound and the text that parsed (for `Link`, which must select the same events).
fn parse_time(name: &str, value: &str) -> Result<(String, i64), ApiError> {
    // An unencoded `+` in an offset arrives as a space.
    let repaired = value.replace(' ', "+");
    parse_instant(value)
        .map(|t| (value.to_string(), t))
        .or_else(|| parse_instant(&repaired).map(|t| (repaired.clone(), t)))
        .ok_or_else(|| {
            bad(format!(
                "{name} must be an RFC 3339 time (2026-12-03T15:04:05.123Z, any offset) or epoch seconds (1764774245.5), got {value:?}"
            ))
        })
}

fn parse_whole(name: &str, value: &str, max: u64) -> Result<u64, ApiError> {
    value
        .parse::<u64>()
        .ok()
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| bad(format!("{name} must be a whole number from 1 to {max}, got {value:?}")))
}

/// The query string's name/value pairs, decoded as forms are (`+` is a space) but strictly:
/// see [`percent_decode_strict`].
fn decode_pairs(query: &str) -> Result<Vec<(String, String)>, ApiError> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = percent_decode_strict(&key.replace('+', " "), "a query parameter name")?;
            let value = percent_decode_strict(&value.replace('+', " "), &format!("query parameter {key}"))?;
            Ok((key, value))
        })
        .collect()
}

fn parse_params(query: &str) -> Result<QueryParams, ApiError> {
    let mut p = QueryParams { page_number: 1, page_size: DEFAULT_PAGE_SIZE, ..Default::default() };
    let mut seen: Vec<String> = Vec::new();
    for (key, value) in decode_pairs(query)? {
        let canonical = if key == "pageSize" { "pagesize".to_string() } else { key.to_string() };
        if seen.contains(&canonical) {
            return Err(bad(format!("{key} is given more than once")));
        }
        seen.push(canonical.clone());
        match canonical.as_str() {
            "productId" => {
                check_product_id(&value, "productId")?;
                p.product_id = Some(value);
            }
            "from" => p.from = Some(parse_time("from", &value)?),
            "to" => p.to = Some(parse_time("to", &value)?),
            "pageNumber" => p.page_number = parse_whole("pageNumber", &value, MAX_PAGE_NUMBER)?,
            "pagesize" => p.page_size = parse_whole(&key, &value, MAX_PAGE_SIZE)?,
            _ => {
                return Err(bad(format!("unknown query parameter {key:?}; expected productId, from, to, pageNumber, pagesize (or pageSize)")));
            }
        }
    }
    if let (Some((_, from)), Some((_, to))) = (&p.from, &p.to) {
        if from > to {
            return Err(bad("from must not be later than to".into()));
        }
    }
    Ok(p)
}

/// What a value in a `Link` URL escapes: everything but letters, digits and RFC 3986's other
/// unreserved characters (so `sku-1.5` stays readable, and `+`, `&`, `/`, `%` are escaped).
const LINK_VALUE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

fn page_link(p: &QueryParams, page: u64, rel: &str) -> String {
    let mut url = String::from("</api/query?");
    let enc = |s: &str| utf8_percent_encode(s, LINK_VALUE).to_string();
    if let Some(id) = &p.product_id {
        let _ = write!(url, "productId={}&", enc(id));
    }
    if let Some((text, _)) = &p.from {
        let _ = write!(url, "from={}&", enc(text));
    }
    if let Some((text, _)) = &p.to {
        let _ = write!(url, "to={}&", enc(text));
    }
    let _ = write!(url, "pageNumber={page}&pagesize={}>; rel=\"{rel}\"", p.page_size);
    url
}

fn link_header(p: &QueryParams, total: u64) -> String {
    let last = total.div_ceil(p.page_size).max(1);
    let mut links = vec![page_link(p, 1, "first")];
    if p.page_number > 1 {
        links.push(page_link(p, (p.page_number - 1).min(last), "prev"));
    }
    if p.page_number < last {
        links.push(page_link(p, p.page_number + 1, "next"));
    }
    links.push(page_link(p, last, "last"));
    links.join(", ")
}

/// One page of price history, in sequence order.
pub async fn query(state: web::Data<ApiState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let slot = state.query_admission.admit()?;
    let params = parse_params(req.query_string())?;
    if let Some(id) = &params.product_id {
        tracing::Span::current().record("product.id", id.as_str());
    }
    let run = RunQuery {
        filter: Filter { product_id: params.product_id.clone(), from: params.from.as_ref().map(|f| f.1), to: params.to.as_ref().map(|t| t.1) },
        page_number: params.page_number,
        page_size: params.page_size,
    };
    let page = state.planner.send(Traced::new(run, &state.planner_depth)).await.map_err(|_| ActorError::ShuttingDown)??;
    let mut body = Vec::with_capacity(page.rows.len() * 96 + 2);
    body.push(b'[');
    for (i, e) in page.rows.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(b"{\"productId\":");
        serde_json::to_writer(&mut body, &*e.product_id).expect("a string serializes");
        body.extend_from_slice(b",\"price\":");
        body.extend_from_slice(e.price.as_str().as_bytes());
        body.extend_from_slice(b",\"timestamp\":");
        body.extend_from_slice(format_epoch(e.timestamp).as_bytes());
        body.push(b'}');
    }
    body.push(b']');
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .insert_header(("X-Total-Count", page.total.to_string()))
        .insert_header(("Link", link_header(&params, page.total)))
        .body(PermitBody::new(body, slot)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_bad_parameter() {
        for (query, name) in [
            ("pagesize=0", "pagesize"),
            ("pageSize=1001", "pageSize"),
            ("pageNumber=0", "pageNumber"),
            ("pageNumber=-1", "pageNumber"),
            ("pageNumber=99999999999999999999", "pageNumber"),
            ("from=yesterday", "from"),
            ("to=1764774245.", "to"),
            ("from=2&to=1", "from"),
            ("productId=", "productId"),
            ("colour=red", "colour"),
            ("pagesize=5&pageSize=6", "pageSize"),
        ] {
            match parse_params(query) {
                Err(ApiError::BadRequest(m)) => assert!(m.contains(name), "{query}: {m}"),
                other => panic!("{query}: {other:?}"),
            }
        }
    }

    #[test]
    fn accepts_both_time_forms_and_unencoded_plus() {
        let p = parse_params("from=2025-12-03T15:04:05+01:00&to=1764774245.5&pageSize=7").unwrap();
        assert_eq!(p.page_size, 7);
        assert_eq!(p.from.unwrap().1, repricer_actors::time::parse_rfc3339("2025-12-03T14:04:05Z").unwrap());
        assert_eq!(p.to.unwrap().1, 1_764_774_245_500_000_000);
    }

    #[test]
    fn invalid_utf8_and_bad_escapes_are_refused_not_replaced() {
        for (query, name) in [("productId=%FF", "productId"), ("productId=a%ZZ", "productId"), ("from=%E2%82", "from"), ("%FF=1", "name")] {
            match parse_params(query) {
                Err(ApiError::BadRequest(m)) => assert!(m.contains(name), "{query}: {m}"),
                other => panic!("{query}: {other:?}"),
            }
        }
        assert_eq!(parse_params("productId=%C3%BC+x%2By").unwrap().product_id.as_deref(), Some("ü x+y"));
    }

    #[test]
    fn links_repeat_the_time_bounds_that_parsed() {
        // A space between date and time is RFC 3339; an unencoded + in an offset arrives as a
        // space and is repaired. Either way the link's bound must parse to the same instant.
        for query in ["from=2026-12-03%2000:00:00Z", "from=2026-12-03T00:00:00+01:00", "from=2026-12-03T00:00:00%2B01:00"] {
            let p = parse_params(&format!("{query}&pagesize=1")).unwrap();
            let links = link_header(&p, 10);
            let next = links.split(", ").find(|l| l.ends_with("rel=\"next\"")).unwrap();
            let target = next.trim_start_matches("</api/query?").split('>').next().unwrap();
            let again = parse_params(target).unwrap_or_else(|e| panic!("{query}: link {target}: {e:?}"));
            assert_eq!(again.from.unwrap().1, p.from.unwrap().1, "{query}: {target}");
        }
    }

    #[test]
    fn links_cover_first_prev_next_last() {
        let p = QueryParams { page_number: 2, page_size: 10, product_id: Some("a b/c+d-1.5_~".into()), ..Default::default() };
        let h = link_header(&p, 35);
        assert!(h.contains("productId=a%20b%2Fc%2Bd-1.5_~&pageNumber=1&pagesize=10>; rel=\"prev\""), "{h}");
        assert!(h.contains("pageNumber=3&pagesize=10>; rel=\"next\""), "{h}");
        assert!(h.contains("pageNumber=4&pagesize=10>; rel=\"last\""), "{h}");
    }
}

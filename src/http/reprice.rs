//! `POST /api/reprice` (R1).

use std::borrow::Cow;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use repricer_actors::error::ActorError;
use repricer_actors::price::Price;
use repricer_actors::product::Reprice;
use repricer_actors::telemetry::Traced;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::oneshot;

use crate::http::error::ApiError;
use crate::http::{check_product_id, ApiState};

/// Largest accepted body (R1).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Longest wait for a request body: a client that stops sending mid-body gets 408 and its
/// connection back, so stalled clients cannot pile up and exhaust the file descriptors.
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RepriceBody<'a> {
    #[serde(borrow)]
    product_id: Cow<'a, str>,
    #[serde(borrow)]
    price: &'a RawValue,
}

/// Validates the body into a product id and an exact price.
fn parse_body(bytes: &[u8]) -> Result<(String, Price), ApiError> {
    // serde would also read a struct from an array (`["a", 1]`); only an object is a reprice.
    if bytes.trim_ascii_start().first() != Some(&b'{') {
        return Err(ApiError::BadRequest(
            "the body must be a JSON object: {\"productId\": \"<string>\", \"price\": <number>}".into(),
        ));
    }
    let body: RepriceBody<'_> = serde_json::from_slice(bytes).map_err(|e| {
        let what = if e.is_data() { "invalid reprice body" } else { "malformed JSON" };
        ApiError::BadRequest(format!("{what}: {e}; expected {{\"productId\": \"<string>\", \"price\": <number>}}"))
    })?;
    check_product_id(&body.product_id, "productId")?;
    let price = Price::parse(body.price.get()).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    Ok((body.product_id.into_owned(), price))
}

fn check_content_type(req: &HttpRequest) -> Result<(), ApiError> {
    let Some(value) = req.headers().get(header::CONTENT_TYPE) else { return Ok(()) };
    let text = value.to_str().unwrap_or("");
    let mut parts = text.split(';');
    let mime = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let is_json = mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"));
    // JSON is UTF-8 (RFC 8259); a body declared in another charset would be read wrongly.
    let other_charset = parts.filter_map(|p| p.split_once('=')).any(|(k, v)| {
        k.trim().eq_ignore_ascii_case("charset") && !v.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
    });
    if is_json && !other_charset {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(text.to_string()))
    }
}

async fn read_body(req: &HttpRequest, mut payload: web::Payload) -> Result<web::BytesMut, ApiError> {
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
        return Err(ApiError::PayloadTooLarge(MAX_BODY_BYTES));
    }
    let mut body = web::BytesMut::with_capacity(declared.unwrap_or(256));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("cannot read request body: {e}")))?;
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(ApiError::PayloadTooLarge(MAX_BODY_BYTES));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Accepts one observed price; answers 202 once it is sequenced and durable.
pub async fn reprice(state: web::Data<ApiState>, req: HttpRequest, payload: web::Payload) -> Result<HttpResponse, ApiError> {
    let _slot = state.reprice_admission.admit()?;
    check_content_type(&req)?;
    let body = tokio::time::timeout(BODY_TIMEOUT, read_body(&req, payload))
        .await
        .map_err(|_| ApiError::BodyTimeout(BODY_TIMEOUT))??;
    let (product_id, price) = parse_body(&body)?;
    tracing::Span::current().record("product.id", product_id.as_str());
    if state.health.storage_failed() {
        return Err(ActorError::StorageUnavailable.into());
    }
    let (reply, outcome) = oneshot::channel();
    state
        .registry
        .try_send(Traced::new(Reprice { product_id, price, reply }, &state.registry_depth))
        .map_err(|_| ActorError::Overloaded)?;
    // A stalled disk must not hang crawlers: past the write timeout the answer is 503 (the
    // event may still become durable; a 503 never promises that it did not).
    tokio::time::timeout(state.write_timeout, outcome)
        .await
        .map_err(|_| ApiError::WriteTimeout(state.write_timeout))?
        .map_err(|_| ActorError::Overloaded)??;
    Ok(HttpResponse::Accepted().finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_what_r1_rejects() {
        for body in [
            "{",
            "[]",
            r#"["a", 1]"#,
            " ",
            r#"{"productId":"a"}"#,
            r#"{"price":1}"#,
            r#"{"productId":"a","price":1,"x":1}"#,
            r#"{"productId":5,"price":1}"#,
            r#"{"productId":"","price":1}"#,
            r#"{"productId":"a","price":"1"}"#,
            r#"{"productId":"a","price":0}"#,
            r#"{"productId":"a","price":-2}"#,
            r#"{"productId":"a","price":NaN}"#,
        ] {
            assert!(parse_body(body.as_bytes()).is_err(), "{body} must be rejected");
        }
        let (id, price) = parse_body(br#"{"productId":"a/b","price":19.990}"#).unwrap();
        assert_eq!((id.as_str(), price.as_str()), ("a/b", "19.990"));
    }
}

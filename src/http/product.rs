//! `GET /api/product/{productId}/price` (R3).

use actix_web::{web, HttpRequest, HttpResponse};
use repricer_actors::error::ActorError;
use repricer_actors::product::GetPrice;
use repricer_actors::telemetry::Traced;
use repricer_actors::time::format_epoch;
use tokio::sync::oneshot;

use crate::http::admission::PermitBody;
use crate::http::error::ApiError;
use crate::http::{check_product_id, percent_decode_strict, ApiState};

/// The product id: one percent-encoded path segment, decoded from the raw path so that
/// `a%2Fb` is the id `a/b`.
fn product_id_from_path(raw_path: &str) -> Result<String, ApiError> {
    let segment = raw_path
        .strip_prefix("/api/product/")
        .and_then(|rest| rest.strip_suffix("/price"))
        .filter(|s| !s.contains('/'))
        .ok_or_else(|| ApiError::NotFound("no such route".into()))?;
    let id = percent_decode_strict(segment, "productId")?;
    check_product_id(&id, "productId")?;
    Ok(id)
}

/// The last durable price of one product.
pub async fn product_price(state: web::Data<ApiState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let slot = state.product_admission.admit()?;
    let product_id = product_id_from_path(req.uri().path())?;
    tracing::Span::current().record("product.id", product_id.as_str());
    let (reply, answer) = oneshot::channel();
    state
        .registry
        .try_send(Traced::new(GetPrice { product_id: product_id.clone(), reply }, &state.registry_depth))
        .map_err(|_| ActorError::Overloaded)?;
    let last = answer.await.map_err(|_| ActorError::Overloaded)?;
    let last = last.ok_or_else(|| ApiError::NotFound(format!("no price known for product {product_id:?}")))?;
    let mut body = String::with_capacity(product_id.len() + 96);
    body.push_str("{\"productId\":");
    body.push_str(&serde_json::to_string(&product_id).expect("a string serializes"));
    body.push_str(",\"price\":");
    body.push_str(last.price.as_str());
    body.push_str(",\"timestamp\":");
    body.push_str(&format_epoch(last.timestamp));
    body.push('}');
    Ok(HttpResponse::Ok().content_type("application/json").body(PermitBody::new(body, slot)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_one_segment() {
        assert_eq!(product_id_from_path("/api/product/a%2Fb/price").unwrap(), "a/b");
        assert_eq!(product_id_from_path("/api/product/a+b%20c%25/price").unwrap(), "a+b c%");
        assert_eq!(product_id_from_path("/api/product/%C3%BC/price").unwrap(), "ü");
        assert!(product_id_from_path("/api/product/%FF/price").is_err());
    }
}

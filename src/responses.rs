//! Responses the gateway writes itself: the Supervisor's error envelope with the
//! status code of the refusal or failure.

use axum::body::Body;
use http::{header, HeaderValue, Response, StatusCode};

/// A response body in the Supervisor's error envelope.
///
/// The message must already be safe for the client: it names what was refused
/// and why, never a token or an internal detail.
pub fn error(status: StatusCode, message: &str) -> Response<Body> {
    let body = serde_json::json!({ "result": "error", "message": message }).to_string();
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if status == StatusCode::UNAUTHORIZED {
        headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    if status == StatusCode::METHOD_NOT_ALLOWED {
        headers.insert(
            header::ALLOW,
            HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
        );
    }
    response
}

/// Marks a 401 as the answer to a token that was presented but refused
/// (RFC 6750): expired, revoked or not verifying.
pub fn invalid_token(response: &mut Response<Body>) {
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer error=\"invalid_token\""),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body_json(response: Response<Body>) -> serde_json::Value {
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("in-memory body")
            .to_bytes();
        serde_json::from_slice(&bytes).expect("envelope is json")
    }

    #[tokio::test]
    async fn unauthorized_carries_the_bearer_challenge_and_the_envelope() {
        let response = error(StatusCode::UNAUTHORIZED, "no token");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
        let json = body_json(response).await;
        assert_eq!(json["result"], "error");
        assert_eq!(json["message"], "no token");
    }

    #[tokio::test]
    async fn forbidden_has_no_challenge() {
        let response = error(StatusCode::FORBIDDEN, "route denied");
        assert!(response.headers().get(header::WWW_AUTHENTICATE).is_none());
        assert_eq!(body_json(response).await["result"], "error");
    }
}

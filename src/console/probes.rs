//! What operators and load balancers ask over HTTP: `/metrics` (the
//! Prometheus registry as OpenMetrics text; a reader's token when the
//! server has tokens) and `/healthz` (200 while the TimelineService is
//! SERVING, 503 otherwise — the gRPC health service's own answer, asked
//! in-process; always open).

use super::Console;
use crate::auth::Role;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

pub async fn metrics(State(console): State<Console>, headers: HeaderMap) -> Response {
    if let Some(tokens) = &console.tokens {
        if let Err(status) = tokens.authorize(&headers, "/metrics", Role::Reader) {
            return super::gateway::error(&status);
        }
    }
    let text = crate::metrics::render(&console.db);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

pub async fn healthz(State(console): State<Console>) -> Response {
    let mut health = HealthClient::new(console.local.channel(&HeaderMap::new()));
    let asked = health
        .check(HealthCheckRequest {
            service: crate::proto::timeline_service_server::SERVICE_NAME.to_string(),
        })
        .await;
    let serving = asked
        .as_ref()
        .is_ok_and(|answer| answer.get_ref().status() == ServingStatus::Serving);
    let (code, text) = if serving {
        (StatusCode::OK, "SERVING\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "NOT_SERVING\n")
    };
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
        .into_response()
}

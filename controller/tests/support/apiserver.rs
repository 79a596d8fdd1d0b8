//! A scripted Kubernetes API server on kube-rs's tower-test mock service: the test reads each
//! request the client sends, asserts on it and answers it. Event writes (events.k8s.io) are
//! answered and recorded on the side, wherever they fall, so scripts only name the requests
//! that matter and then assert on the recorded Events.
//!
//! Every request is first checked against the controller's ClusterRole (`deploy/rbac.yaml`,
//! [`super::rbac`]). One the role does not allow is answered 403 `Forbidden`, as a cluster
//! would answer it, and fails the test: [`MockApiServer::receive`] (and so `next` and `finish`)
//! panics with the API server's message, and requests still queued when the server is dropped
//! (a watcher's, say, that the test never read) are checked on drop.

use super::rbac;
use futures::FutureExt;
use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;
use tower_test::mock::{self, Handle, SendResponse};

/// Asserts `req` is this controller's server-side apply of the status of a `kind` object at
/// `path`: field manager, force, and a body that claims nothing but the status (an apply that
/// sent spec or metadata would take ownership of them away from their authors).
pub fn assert_status_apply(req: &Captured, path: &str, kind: &str) {
    assert_eq!((&req.method, req.path.as_str()), (&Method::PATCH, path));
    assert_eq!(req.content_type, "application/apply-patch+yaml");
    assert_eq!(
        req.query.get("fieldManager").map(String::as_str),
        Some(yun_controller::kube_source::FIELD_MANAGER)
    );
    assert_eq!(req.query.get("force").map(String::as_str), Some("true"));
    let mut keys: Vec<&str> = req
        .body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(keys, ["apiVersion", "kind", "status"], "{}", req.body);
    assert_eq!(
        (req.body["apiVersion"].as_str(), req.body["kind"].as_str()),
        (Some("yun.dev/v1alpha1"), Some(kind))
    );
}

const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
const EVENTS_PATH: &str = "/apis/events.k8s.io/v1/namespaces/";

/// One request the client made, with its body decoded as JSON.
#[derive(Debug)]
pub struct Captured {
    pub method: Method,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub content_type: String,
    pub body: Value,
    send: SendResponse<Response<Body>>,
}

impl Captured {
    pub fn respond(self, status: StatusCode, body: &impl Serialize) {
        let bytes = serde_json::to_vec(body).unwrap();
        let response = Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Body::from(bytes))
            .unwrap();
        self.send.send_response(response);
    }

    /// Answers with a Kubernetes `Status` failure (what the API server sends for 4xx/5xx).
    pub fn fail(self, code: u16, reason: &str, message: &str) {
        let status = serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code,
        });
        self.respond(StatusCode::from_u16(code).unwrap(), &status);
    }

    /// A watch request (`?watch=true`).
    pub fn is_watch(&self) -> bool {
        self.query.get("watch").map(String::as_str) == Some("true")
    }

    pub fn is_event_write(&self) -> bool {
        self.path.starts_with(EVENTS_PATH)
            && (self.method == Method::POST || self.method == Method::PATCH)
    }
}

/// Answers `send` with the API server's 403 for `denied`.
fn respond_forbidden(send: SendResponse<Response<Body>>, denied: &rbac::Denied) {
    let status = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": denied.message, "reason": "Forbidden", "code": 403,
        "details": denied.attributes.as_ref().map(|a| serde_json::json!({
            "name": a.name, "group": a.group, "kind": a.resource,
        })),
    });
    let response = Response::builder()
        .status(StatusCode::FORBIDDEN)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(&status).unwrap()))
        .unwrap();
    send.send_response(response);
}

fn parse_query(query: Option<&str>) -> BTreeMap<String, String> {
    query
        .unwrap_or_default()
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (kv.to_owned(), String::new()),
        })
        .collect()
}

/// The ClusterRole's verdict on a request.
fn authorize(parts: &http::request::Parts) -> Result<(), rbac::Denied> {
    let query = parse_query(parts.uri.query());
    let path = parts.uri.path();
    rbac::authorize(&parts.method, path, &query)?;
    let content_type = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    rbac::authorize_apply_create(&parts.method, path, &query, content_type)
}

pub struct MockApiServer {
    handle: Handle<Request<Body>, Response<Body>>,
    events: Vec<Value>,
    /// Requests the ClusterRole refused (answered 403), not yet taken by the test.
    denials: Vec<String>,
}

impl MockApiServer {
    /// A client whose every request arrives at the returned server.
    pub fn start() -> (kube::Client, MockApiServer) {
        let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
        (
            kube::Client::new(service, "default"),
            MockApiServer {
                handle,
                events: Vec::new(),
                denials: Vec::new(),
            },
        )
    }

    /// The next request of any kind; `None` once the client is gone. Panics on a request the
    /// ClusterRole forbids (after answering it 403).
    pub async fn receive(&mut self) -> Option<Captured> {
        match self.receive_checked().await? {
            Ok(captured) => Some(captured),
            Err(denied) => panic!(
                "the controller made a request its ClusterRole forbids (answered 403): {denied}"
            ),
        }
    }

    /// The next request; one the ClusterRole forbids is answered 403, recorded (the test fails
    /// at drop unless it takes it with [`Self::take_denials`]) and returned as `Err`.
    pub async fn receive_checked(&mut self) -> Option<Result<Captured, rbac::Denied>> {
        let (request, send) = self.handle.next_request().await?;
        let (parts, body) = request.into_parts();
        if let Err(denied) = authorize(&parts) {
            respond_forbidden(send, &denied);
            self.denials.push(denied.message.clone());
            return Some(Err(denied));
        }
        let bytes = body.collect_bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        let query = parse_query(parts.uri.query());
        let content_type = parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        Some(Ok(Captured {
            method: parts.method,
            path: parts.uri.path().to_owned(),
            query,
            content_type,
            body,
            send,
        }))
    }

    /// The denials recorded so far (each one answered 403); the test has seen them.
    pub fn take_denials(&mut self) -> Vec<String> {
        std::mem::take(&mut self.denials)
    }

    /// Answers an Event write the way the API server does (the object echoed back).
    pub fn record_event(&mut self, captured: Captured) {
        self.events.push(captured.body.clone());
        let status = if captured.method == Method::POST {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        let body = captured.body.clone();
        captured.respond(status, &body);
    }

    /// The next request that is not an Event write.
    pub async fn next(&mut self) -> Captured {
        loop {
            let captured = tokio::time::timeout(REQUEST_TIMEOUT, self.receive())
                .await
                .expect("the client sent no further request")
                .expect("the client was dropped");
            if captured.is_event_write() {
                self.record_event(captured);
            } else {
                return captured;
            }
        }
    }

    /// Serves Event writes until `task` finishes; any other request fails the test.
    pub async fn finish<T>(&mut self, task: impl Future<Output = T>) -> T {
        let mut task = std::pin::pin!(tokio::time::timeout(REQUEST_TIMEOUT, task));
        loop {
            tokio::select! {
                biased;
                done = &mut task => return done.expect("the task did not finish"),
                captured = self.receive() => {
                    // `None`: the task dropped its client (it is returning).
                    let Some(captured) = captured else {
                        return task.await.expect("the task did not finish");
                    };
                    assert!(
                        captured.is_event_write(),
                        "unexpected request {} {} {}",
                        captured.method,
                        captured.path,
                        captured.body
                    );
                    self.record_event(captured);
                }
            }
        }
    }

    /// The Events written since the last call, in order.
    pub fn take_events(&mut self) -> Vec<Value> {
        std::mem::take(&mut self.events)
    }
}

impl Drop for MockApiServer {
    /// Checks the requests still queued (made by tasks the test never read, such as
    /// watchers), answering the forbidden ones 403, and fails the test if any request was
    /// refused and not taken by it.
    fn drop(&mut self) {
        while let Some(Some((request, send))) = self.handle.next_request().now_or_never() {
            let (parts, _body) = request.into_parts();
            if let Err(denied) = authorize(&parts) {
                respond_forbidden(send, &denied);
                self.denials.push(denied.message);
            }
        }
        if !self.denials.is_empty() && !std::thread::panicking() {
            panic!(
                "the controller made {} request(s) its ClusterRole forbids (answered 403):\n{}",
                self.denials.len(),
                self.denials.join("\n")
            );
        }
    }
}

/// `(type, reason)` of each Event.
pub fn event_reasons(events: &[Value]) -> Vec<(String, String)> {
    events
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap_or("?").to_owned(),
                e["reason"].as_str().unwrap_or("?").to_owned(),
            )
        })
        .collect()
}

//! Validating a token someone presented (`GET /v3/auth/tokens` with `X-Subject-Token`).

use std::borrow::Cow;

use http::{HeaderMap, HeaderName, HeaderValue};
use jiff::Timestamp;
use openstack_sdk::api::QueryAsync;
use openstack_sdk::api::rest_endpoint_prelude::{ApiVersion, QueryParams, RestEndpoint};
use openstack_sdk::types::ServiceType;
use serde::Deserialize;

use crate::client::api_error;
use crate::{IdentityError, Keystone, Result};

const SUBJECT_TOKEN: HeaderName = HeaderName::from_static("x-subject-token");

/// Who a valid token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub user_id: String,
    pub user_name: String,
    /// The project the token is scoped to; `None` for unscoped, domain or system tokens.
    pub project_id: Option<String>,
    /// Role names in the token's scope, sorted.
    pub roles: Vec<String>,
    pub expires_at: Timestamp,
    /// Set when the token was obtained with an application credential.
    pub application_credential_id: Option<String>,
}

#[derive(Deserialize)]
struct TokenBody {
    user: NamedRef,
    project: Option<NamedRef>,
    #[serde(default)]
    roles: Vec<NamedRef>,
    expires_at: String,
    application_credential: Option<NamedRef>,
}

#[derive(Deserialize)]
struct NamedRef {
    id: String,
    #[serde(default)]
    name: String,
}

/// The SDK's own token-info request does not mark the subject token sensitive, and the SDK
/// logs requests at INFO: this one does, so the token prints as `Sensitive`. It also asks
/// for no catalog, which keeps the answer small.
struct ValidateToken {
    headers: HeaderMap,
}

impl RestEndpoint for ValidateToken {
    fn method(&self) -> http::Method {
        http::Method::GET
    }

    fn endpoint(&self) -> Cow<'static, str> {
        Cow::Borrowed("auth/tokens")
    }

    fn service_type(&self) -> ServiceType {
        ServiceType::Identity
    }

    fn parameters(&self) -> QueryParams<'_> {
        let mut params = QueryParams::default();
        params.push("nocatalog", true);
        params
    }

    fn response_key(&self) -> Option<Cow<'static, str>> {
        Some(Cow::Borrowed("token"))
    }

    fn request_headers(&self) -> Option<&HeaderMap> {
        Some(&self.headers)
    }

    fn api_version(&self) -> Option<ApiVersion> {
        Some(ApiVersion::new(3, 0))
    }
}

impl Keystone {
    /// Asks Keystone whether `token` is valid and whom it speaks for. Every call is a request
    /// to Keystone; the controller's hot path goes through a [`crate::TokenCache`].
    pub async fn validate_token(&self, token: &str) -> Result<TokenInfo> {
        let invalid = |detail: &str| IdentityError::TokenInvalid {
            detail: detail.to_owned(),
        };
        let mut value =
            HeaderValue::from_str(token).map_err(|_| invalid("not a valid header value"))?;
        value.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(SUBJECT_TOKEN, value);
        let body: TokenBody = ValidateToken { headers }
            .query_async(&self.session)
            .await
            .map_err(|e| match api_error("validating", "token", e) {
                // 404: unknown, expired or revoked token; 401 comes back for malformed ones.
                IdentityError::NotFound { .. } => invalid("Keystone does not know it"),
                IdentityError::Api {
                    status: Some(401),
                    detail,
                    ..
                } => invalid(&detail),
                other => other,
            })?;
        let expires_at =
            parse_keystone_time(&body.expires_at).ok_or_else(|| IdentityError::Api {
                operation: "validating",
                object: "token".to_owned(),
                status: None,
                detail: format!("unreadable expires_at {:?}", body.expires_at),
            })?;
        let mut roles: Vec<String> = body.roles.into_iter().map(|role| role.name).collect();
        roles.sort();
        Ok(TokenInfo {
            user_id: body.user.id,
            user_name: body.user.name,
            project_id: body.project.map(|project| project.id),
            roles,
            expires_at,
            application_credential_id: body.application_credential.map(|cred| cred.id),
        })
    }
}

/// Keystone writes times as `2026-01-02T03:04:05.000000Z`, and application credential expiry
/// without the `Z`; both are UTC.
pub(crate) fn parse_keystone_time(text: &str) -> Option<Timestamp> {
    let utc = if text.ends_with('Z') {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(format!("{text}Z"))
    };
    utc.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keystone_times_parse_with_and_without_zone() {
        let with = parse_keystone_time("2026-01-02T03:04:05.000000Z").unwrap();
        let without = parse_keystone_time("2026-01-02T03:04:05.000000").unwrap();
        assert_eq!(with, without);
        assert_eq!(with.as_second(), 1_767_323_045);
        assert!(parse_keystone_time("yesterday").is_none());
    }
}

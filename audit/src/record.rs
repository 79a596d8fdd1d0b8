//! The audit record types: what a caller supplies ([`AuditEntry`]) and what the log stores
//! ([`AuditRecord`]: the entry plus the sequence number, time and hash chain the log assigns).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Largest serialized [`AuditEntry`] the log accepts. Bounding the line length lets readers
/// refuse absurd lines (a tampered file) without reading them into memory.
pub const MAX_ENTRY_BYTES: usize = 256 * 1024;

/// Who made a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub kind: ActorKind,
    /// Keystone user id, application-credential id, device name or component identity
    /// (e.g. `yun-controller`, `yun-agent/node-3`).
    pub id: String,
    /// Keystone project the actor acted in, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
}

impl Actor {
    /// A Yun component acting on its own authority (controller, agent).
    pub fn component(id: impl Into<String>) -> Self {
        Self {
            kind: ActorKind::Component,
            id: id.into(),
            project: None,
        }
    }

    /// A Keystone user, optionally scoped to a project.
    pub fn user(id: impl Into<String>, project: Option<String>) -> Self {
        Self {
            kind: ActorKind::User,
            id: id.into(),
            project,
        }
    }

    /// A Keystone application credential, optionally scoped to a project.
    pub fn application_credential(id: impl Into<String>, project: Option<String>) -> Self {
        Self {
            kind: ActorKind::ApplicationCredential,
            id: id.into(),
            project,
        }
    }

    /// An enrolled device (e.g. a host identity).
    pub fn device(id: impl Into<String>) -> Self {
        Self {
            kind: ActorKind::Device,
            id: id.into(),
            project: None,
        }
    }
}

/// The kind of identity behind an [`Actor`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActorKind {
    Component,
    User,
    Device,
    ApplicationCredential,
}

impl ActorKind {
    /// The wire name (`component`, `user`, `device`, `application-credential`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Component => "component",
            Self::User => "user",
            Self::Device => "device",
            Self::ApplicationCredential => "application-credential",
        }
    }
}

/// How the change ended. Serialized as `{"result":"ok"}`, `{"result":"error","message":..}`
/// or `{"result":"denied","message":..}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    /// The change was attempted and failed.
    Error {
        message: String,
    },
    /// The change was refused by policy before it was attempted.
    Denied {
        message: String,
    },
}

impl Outcome {
    /// The wire name of the result (`ok`, `error`, `denied`).
    pub fn result(&self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Error { .. } => "error",
            Self::Denied { .. } => "denied",
        }
    }

    /// The failure message, if any.
    pub fn message(&self) -> Option<&str> {
        match self {
            Self::Ok => None,
            Self::Error { message } | Self::Denied { message } => Some(message),
        }
    }
}

/// What a caller records: the log adds `seq`, `time`, `prev` and `hash`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub actor: Actor,
    /// Dotted verb, e.g. `vm.place`, `vm.start`, `volume.attach`, `firewall.apply`,
    /// `credential.issue`.
    pub action: String,
    /// The object acted on, e.g. `VirtualMachine default/web`.
    pub object: String,
    pub outcome: Outcome,
    /// Optional extra facts (host chosen, ruleset generation ...).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub details: Map<String, Value>,
}

impl AuditEntry {
    /// A successful change with no details.
    pub fn new(actor: Actor, action: impl Into<String>, object: impl Into<String>) -> Self {
        Self {
            actor,
            action: action.into(),
            object: object.into(),
            outcome: Outcome::Ok,
            details: Map::new(),
        }
    }

    pub fn with_outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }

    pub fn with_detail(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.details.insert(key.into(), value.into());
        self
    }

    /// Rejects entries that would make a useless or unbounded record. Cheap enough to call on
    /// the producer's side so one bad entry never fails a whole batch.
    pub fn validate(&self) -> Result<(), String> {
        self.check_fields()?;
        let size = serde_json::to_vec(self).map_err(|e| e.to_string())?.len();
        if size > MAX_ENTRY_BYTES {
            return Err(format!(
                "entry is {size} bytes, more than the {MAX_ENTRY_BYTES} allowed"
            ));
        }
        Ok(())
    }

    /// The checks that need no serialization.
    pub(crate) fn check_fields(&self) -> Result<(), String> {
        if self.actor.id.trim().is_empty() {
            return Err("actor id is empty".to_string());
        }
        if self.action.trim().is_empty() {
            return Err("action is empty".to_string());
        }
        if self.object.trim().is_empty() {
            return Err("object is empty".to_string());
        }
        Ok(())
    }
}

/// One stored record: a line of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// 1-based, consecutive.
    pub seq: u64,
    /// When the log accepted the entry (UTC, RFC 3339).
    pub time: jiff::Timestamp,
    pub actor: Actor,
    pub action: String,
    pub object: String,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub details: Map<String, Value>,
    /// Hex SHA-256 of the previous record ([`crate::GENESIS_PREV`] for seq 1).
    pub prev: String,
    /// Hex SHA-256 of this record's line without the `hash` member (see [`crate::chain`]).
    pub hash: String,
}

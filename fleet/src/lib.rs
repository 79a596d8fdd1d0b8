//! The contract between the Yun controller and its agents on the fleet bus (etcd).
//!
//! This crate owns three things and nothing else — no I/O:
//! - the key schema ([`keys`]): where every record lives, and how a key is parsed back;
//! - the records ([`records`]): small, versioned JSON documents;
//! - the codec ([`codec`]): encode/decode with errors that name the key.
//!
//! Both sides depend on this crate, so a change here is a change of the wire contract:
//! bump [`records::SCHEMA_VERSION`] when a record changes incompatibly.

pub mod codec;
#[cfg(feature = "fixtures")]
pub mod fixtures;
pub mod identity;
pub mod keys;
pub mod names;
pub mod network;
pub mod records;
pub mod sealed;
pub mod volume;

pub use codec::{CodecError, decode, encode};
pub use identity::{GuestCredential, SealedBox, VmIdentityRecord};
pub use keys::{HostKey, KeyError};
pub use network::{HostGroups, HostNetworks, MemberShard, NetworkRecord, NicRecord, SegmentRecord};
pub use records::*;
pub use volume::{
    AttachPhase, AttachmentRecord, ChapRecord, ClaimHolder, Secret, VolumeClaim, VolumeRecord,
    VolumeSourceRecord,
};

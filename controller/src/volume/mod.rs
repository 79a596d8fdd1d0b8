//! Volumes: the attachment lifecycle with a bound on every transitional phase ([`lifecycle`]),
//! the single-writer rule ([`claim`]), a VM's volumes resolved to fleet records ([`resolve`]),
//! the claims a VM's host is granted ([`attach`]), and each Volume's status ([`status`]).

pub mod attach;
pub mod claim;
pub mod force;
pub mod lifecycle;
pub mod reconcile;
pub mod resolve;
pub mod status;

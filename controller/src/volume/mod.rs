//! Volumes (pure logic, no I/O): the attachment lifecycle with a bound on every transitional
//! phase ([`lifecycle`]) and the single-writer rule that decides whether a volume may be
//! attached where a VM wants it ([`claim`]).

pub mod claim;
pub mod lifecycle;

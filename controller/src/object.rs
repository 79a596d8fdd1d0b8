//! The controller's shared vocabulary, defined once below every kind and source: the
//! finalizers each kind holds (the same names in Kubernetes and bootstrap mode) and the
//! annotation that marks what the manifests directory declared.

/// Held on a VirtualMachine until its host has removed it and its resources are released.
pub const VM_FINALIZER: &str = "yun.dev/vm-cleanup";
/// Held on a Network or SecurityGroup while a VirtualMachine names it, and on a Volume while a
/// VM holds it.
pub const IN_USE_FINALIZER: &str = "yun.dev/in-use";
/// Held on a DeviceIdentity until its credentials are revoked.
pub const DEVICE_FINALIZER: &str = "yun.dev/device-credential";

/// On an object the manifests directory declared: the file it came from. Removing the file
/// deletes the object; objects without it (`yunctl apply`, the controller's own children) are
/// not the directory's to delete.
pub const MANIFEST_ANNOTATION: &str = "yun.dev/manifest-file";

//! The field tables, one module per API group version (package of the proto files).

pub mod apps_v1;
pub mod batch_v1;
pub mod core_v1;
pub mod meta_v1;
pub mod networking_v1;
pub mod policy_v1;
pub mod rbac_v1;
pub mod scheduling_v1;

//! `kube`: a whole Kubernetes cluster in one binary. The library holds every part;
//! `main.rs` is only the command line.

pub mod api;
pub mod config;
pub mod etcd;
pub mod pki;
pub mod server;
pub mod store;

//! `kube`: a whole Kubernetes cluster in one binary. The library holds every part;
//! `main.rs` is only the command line.

pub mod api;
pub mod client;
pub mod config;
pub mod controllers;
pub mod etcd;
pub mod events;
pub mod forward;
pub mod informer;
pub mod kubelet;
pub mod leader;
pub mod pki;
pub mod scheduler;
pub mod server;
pub mod store;

//! The node agent's kubelet: the CRI client and the pod lifecycle.

pub mod cri;
pub mod pods;

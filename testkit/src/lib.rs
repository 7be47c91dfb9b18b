//! Test support: throwaway etcd servers for Pacer's tests and benchmarks.
//!
//! [`EtcdServer::start`] runs a private, single-member etcd on free loopback ports with its
//! data in a temporary directory, and kills it (and removes the directory) when dropped, so
//! every test gets an empty store and leaves nothing behind.

mod etcd;

pub use etcd::{EtcdServer, EtcdServerTls, TestkitError};

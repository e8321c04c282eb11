//! Tests of leasetso's PD-compatible gRPC door against real PD clients; see
//! `tests/`. The `leasetso` binary they run is `LEASETSO_BIN`, or the
//! project's debug build (`cargo build -p leasetso` at the root).

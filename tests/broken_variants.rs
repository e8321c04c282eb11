//! The known-broken PaxosLease variants (`Bugs`) reach the simulator and the
//! model checker and never a binary that serves.
//!
//! They compile only into `leasetso-core-variants` (tests/core-variants), a
//! second build of the core's sources under its own name; leasetso-core has
//! no feature for them and refuses to compile them under its own name. These
//! tests check what that arrangement promises: the core the workspace builds
//! has none, the simulator's core has them, the `leasetso` binary links no
//! variant core, and the variant package builds the core from the same
//! dependencies (so the simulator tests the core that ships).
//!
//! The binary check reads the binary `cargo test --workspace` builds (or
//! `cargo build -p leasetso`, or `LEASETSO_BIN`).

use std::collections::BTreeMap;
use std::path::Path;

use leasetso_tests::leasetso_bin;

/// The variant core's crate name, as its symbols and debug info carry it.
const VARIANT_CRATE: &[u8] = b"leasetso_core_variants";

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
#[allow(clippy::assertions_on_constants, reason = "the constant is what the build made of the core")]
fn the_core_the_workspace_builds_has_no_variants() {
    // Feature unification gives every package of one build the same
    // leasetso-core, so this is the core the `leasetso` binary of this build
    // links.
    assert!(
        !leasetso_core::Bugs::AVAILABLE,
        "leasetso-core was built with the broken variants: some crate turned them on, \
         and every binary of this build serves them"
    );
    assert_eq!(
        leasetso_core::Bugs::default(),
        leasetso_core::NodeConfig::new(leasetso_core::NodeId(0), 1).bugs
    );
}

#[test]
#[allow(clippy::assertions_on_constants, reason = "the constant is what the build made of the core")]
fn the_simulators_core_has_them() {
    use leasetso_core_variants::Bugs;
    assert!(Bugs::AVAILABLE);
    assert_eq!(Bugs::NONE, Bugs::default());
    let late = format!("{:?}", Bugs::LATE_TIMER);
    assert!(late.contains("late_timer: true"), "{late}");
    assert!(!late.contains("scalar_quorum: true"), "{late}");
}

#[test]
fn the_leasetso_binary_links_no_variant_core() {
    // The scan can see a linked variant core: this test executable links one
    // (the Debug formatting above is its code), and its name is in here.
    let me = std::env::current_exe().expect("the test executable's path");
    let own = std::fs::read(&me).unwrap_or_else(|e| panic!("reading {}: {e}", me.display()));
    assert!(
        contains(&own, VARIANT_CRATE),
        "{} links leasetso-core-variants, yet its name is not in the file: the scan of the \
         binary below would prove nothing",
        me.display()
    );

    let bin = leasetso_bin();
    let bytes = std::fs::read(&bin).unwrap_or_else(|e| panic!("reading {}: {e}", bin.display()));
    // And the binary still names its crates (it is not stripped), so the
    // absence below means something.
    assert!(contains(&bytes, b"leasetso_core"), "{} does not name leasetso_core", bin.display());
    assert!(
        !contains(&bytes, VARIANT_CRATE),
        "{} links leasetso-core-variants: the broken PaxosLease variants are in a binary that serves",
        bin.display()
    );
}

/// The dependency tables of a manifest (`[dependencies]`, target-specific
/// ones too), each as its sorted entries without comments.
fn dependency_tables(manifest: &Path) -> BTreeMap<String, Vec<String>> {
    let text =
        std::fs::read_to_string(manifest).unwrap_or_else(|e| panic!("reading {}: {e}", manifest.display()));
    let mut tables = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if line.starts_with('[') {
            let is_deps =
                line.ends_with("dependencies]") && !line.contains("dev-") && !line.contains("build-");
            current = is_deps.then(|| line.to_string());
            if let Some(header) = &current {
                tables.entry(header.clone()).or_insert_with(Vec::new);
            }
            continue;
        }
        if let Some(header) = &current {
            tables.get_mut(header).expect("inserted at its header").push(line.to_string());
        }
    }
    for entries in tables.values_mut() {
        entries.sort();
    }
    tables
}

#[test]
fn the_variant_package_builds_the_core_from_the_same_dependencies() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let core = dependency_tables(&root.join("../core/Cargo.toml"));
    let variants = dependency_tables(&root.join("core-variants/Cargo.toml"));
    assert!(core.contains_key("[dependencies]"), "core/Cargo.toml has no [dependencies]: {core:?}");
    assert_eq!(
        core, variants,
        "tests/core-variants/Cargo.toml must list the dependencies of core/Cargo.toml, \
         or the simulator runs a core that does not ship"
    );
}

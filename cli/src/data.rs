//! `leasetso data`: a stopped node's store, offline. `inspect` prints what
//! it holds; `reset-fence` is the repair of a store wedged by a fence no
//! leadership can pass (README, "Repairing a store").

use std::path::{Path, PathBuf};

use clap::Subcommand;
use leasetso_core::{Ballot, NodeId};
use leasetso_sled::{Inspection, SledStore};

#[derive(Debug, Subcommand)]
pub(crate) enum DataCommand {
    /// Print what a stopped node's store holds: cluster, node, restart
    /// counter and marker, fence, window end, primary registration.
    Inspect {
        /// The node's data dir (its `serve --data`).
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
    },
    /// Reset the fence of a stopped node's store to zero, keeping its
    /// window, registration and restart counter: the repair of a store
    /// wedged by a fence no leadership can pass. Stop every node of the
    /// cluster first, reset each wedged store, then start them again.
    ResetFence {
        /// The node's data dir (its `serve --data`).
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
        /// Confirms that every node of the cluster is stopped.
        #[arg(long)]
        cluster_stopped: bool,
    },
}

pub(crate) fn run(command: DataCommand) -> Result<(), String> {
    match command {
        DataCommand::Inspect { data } => {
            let found = SledStore::inspect(&data).map_err(|e| e.to_string())?;
            print!("{}", show(&data, &found));
            Ok(())
        }
        DataCommand::ResetFence { data, cluster_stopped } => {
            if !cluster_stopped {
                return Err(
                    "reset-fence lowers a fence: run it only with every node of the cluster stopped, \
                            and say so with --cluster-stopped"
                        .into(),
                );
            }
            let old = SledStore::reset_fence(&data).map_err(|e| e.to_string())?;
            println!("fence of {} reset: was {}, now none", data.display(), ballot(old));
            Ok(())
        }
    }
}

fn ballot(b: Ballot) -> String {
    if b == Ballot::ZERO { "none".into() } else { b.to_string() }
}

fn node(n: NodeId) -> String {
    (u32::from(n.0) + 1).to_string()
}

/// One `key=value` line per field, node ids 1-based as on the command
/// line, ballots `(counter,restart,node)` as `status` prints them.
fn show(dir: &Path, i: &Inspection) -> String {
    let opt = |v: Option<u64>| v.map_or_else(|| "none".into(), |v| v.to_string());
    let primary = match i.primary {
        Some((id, tag)) => format!("{} tag={tag}", node(id)),
        None => "none".into(),
    };
    format!(
        "data={}\ncluster_id={}\nnode={}\nrestart={}\nrestart_marker={}\nfence={}\nfence_owner={}\nwindow_end_ms={}\nprimary={primary}\n",
        dir.display(),
        opt(i.cluster_id),
        i.node.map_or_else(|| "none".into(), node),
        i.restart,
        opt(i.marker),
        ballot(i.fence),
        if i.fence == Ballot::ZERO { "none".into() } else { node(i.fence.node) },
        i.window_end_ms,
    )
}

//! `scim-bridge reconcile`: compares every stored resource with the target and converges
//! the drift (or, with `--dry-run`, only prints it).
//!
//! For each user, then each group, in the state store: the change the mapping computes
//! for its current image (as a replace would), then the target's plan for it (LDIF for a
//! directory; empty when the entry matches). A plan that is not empty is drift: printed,
//! then applied unless `--dry-run`. Then the target's own entries of each kind that no
//! stored resource has (orphans: removed by hand from the store's point of view, or a
//! change lost) are printed and removed — unless the kind's delete policy is `disable`,
//! which keeps the entries of deleted resources on purpose.
//!
//! Exit codes: 0 in sync (or every drift fixed), 1 drift found by a dry run or a change
//! the target refuses, 2 the configuration, the store or the target cannot be used.
//! Safe while the daemon runs: converging is idempotent, and the delivery worker's later
//! changes win as they are applied after.

use std::collections::HashSet;
use std::process::ExitCode;

use anyhow::Context;
use scim_bridge::config::Config;
use scim_bridge::journal::record::{Op, Record};
use scim_bridge::mapping::model::DeletePolicy;
use scim_bridge::scim::schema::ResourceKind;
use scim_bridge::store::Store;
use scim_bridge::target::{Change, Outcome, Target};
use serde_json::Value;

/// Stored resources read per page.
const PAGE: usize = 500;

#[derive(Default)]
struct Tally {
    compared: usize,
    in_sync: usize,
    drifted: usize,
    orphans: usize,
    refused: usize,
}

pub fn run(cfg: &Config, dry_run: bool) -> anyhow::Result<ExitCode> {
    let Some(target_cfg) = &cfg.target else {
        anyhow::bail!("the configuration has no 'target:'; there is nothing to reconcile");
    };
    let store = Store::open(&cfg.state.dir).with_context(|| {
        format!(
            "while opening the state store in {}",
            cfg.state.dir.display()
        )
    })?;
    let target = scim_bridge::target::open(target_cfg)
        .with_context(|| format!("while opening the target ({})", target_cfg.describe()))?;
    let mut tally = Tally::default();
    for kind in [ResourceKind::User, ResourceKind::Group] {
        let Some(map) = target_cfg.mapping.for_kind(kind) else {
            continue;
        };
        let mut stored_ids = HashSet::new();
        for page in store.pages(kind, PAGE) {
            let page = page.context("while reading the stored resources")?;
            for stored in page {
                stored_ids.insert(stored.id.clone());
                let label = label(kind, &stored.id, &stored.doc);
                let record = image_record(kind, &stored.id, Value::Object(stored.doc));
                let change = match target_cfg.mapping.change(&record) {
                    Ok(change) => change,
                    Err(reason) => {
                        println!("# {label}: the mapping cannot write it: {reason}");
                        tally.refused += 1;
                        continue;
                    }
                };
                tally.compared += 1;
                converge(target.as_ref(), &change, &label, dry_run, &mut tally)?;
            }
        }
        if map.on_delete == DeletePolicy::Disable {
            // The entries of deleted resources are kept on purpose.
            continue;
        }
        for id in target.held(kind)? {
            if stored_ids.contains(&id) {
                continue;
            }
            tally.orphans += 1;
            let label = format!("{} {id} (not in the state store)", kind.name());
            let change = Change::Remove {
                kind,
                key: id.clone(),
            };
            converge(target.as_ref(), &change, &label, dry_run, &mut tally)?;
        }
    }
    println!(
        "{} resources compared: {} in sync, {} {}, {} orphan entries {}, {} refused",
        tally.compared,
        tally.in_sync,
        tally.drifted,
        if dry_run { "differ" } else { "converged" },
        tally.orphans,
        if dry_run { "to remove" } else { "removed" },
        tally.refused,
    );
    let clean = tally.refused == 0 && (!dry_run || tally.drifted + tally.orphans == 0);
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Prints the plan of `change` and, unless a dry run, applies it. Err: the target is
/// unavailable (reconcile stops; nothing is half-done, a rerun continues).
fn converge(
    target: &dyn Target,
    change: &Change,
    label: &str,
    dry_run: bool,
    tally: &mut Tally,
) -> anyhow::Result<()> {
    let plan = match target.plan(change) {
        Ok(plan) => plan,
        Err(Outcome::Rejected(detail)) => {
            println!("# {label}: the target refuses it: {detail}");
            tally.refused += 1;
            return Ok(());
        }
        Err(Outcome::Unavailable(e)) => anyhow::bail!("the target is unavailable: {e}"),
        Err(Outcome::Applied) => Vec::new(),
    };
    if plan.is_empty() {
        if !matches!(change, Change::Remove { .. }) {
            tally.in_sync += 1;
        }
        return Ok(());
    }
    if !matches!(change, Change::Remove { .. }) {
        tally.drifted += 1;
    }
    println!("# {label}");
    for block in &plan {
        println!("{block}");
    }
    if dry_run {
        return Ok(());
    }
    match target.apply(change) {
        Outcome::Applied => Ok(()),
        Outcome::Rejected(detail) => {
            println!("# {label}: the target refuses it: {detail}");
            tally.refused += 1;
            Ok(())
        }
        Outcome::Unavailable(e) => anyhow::bail!("the target is unavailable: {e}"),
    }
}

/// A resource for the printout: kind, id and its name.
fn label(kind: ResourceKind, id: &str, doc: &serde_json::Map<String, Value>) -> String {
    let name_attr = match kind {
        ResourceKind::User => "userName",
        ResourceKind::Group => "displayName",
    };
    match doc.get(name_attr).and_then(Value::as_str) {
        Some(name) => format!("{} {id} ({name})", kind.name()),
        None => format!("{} {id}", kind.name()),
    }
}

/// A journal record carrying the current image, as a replace of it would.
fn image_record(kind: ResourceKind, id: &str, image: Value) -> Record {
    Record {
        seq: 0,
        prev: String::new(),
        time: scim_bridge::journal::timestamp(time::OffsetDateTime::now_utc()),
        endpoint: scim_bridge::engine::DEFAULT_ENDPOINT.to_string(),
        actor: "reconcile".into(),
        client: None,
        request_id: None,
        op: Op::Replace,
        kind: kind.name().to_string(),
        id: id.to_string(),
        version_before: None,
        version_after: None,
        image,
        member_delta: None,
    }
}

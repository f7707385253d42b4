//! The plan's JSON form (`format-spec/plan.md`).

use super::{Action, LocalCond, Mode, Op, PLAN_VERSION, Plan, PlanStats, Precondition, Reason, RemoteCond};
use crate::id::ObjectId;
use crate::reconcile::diff::Leaf;

impl serde::Serialize for RemoteCond {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(1))?;
        match self {
            Self::IfMatch(etag) => m.serialize_entry("if_match", etag)?,
            Self::IfAbsent => m.serialize_entry("if_none_match", "*")?,
        }
        m.end()
    }
}

impl serde::Serialize for LocalCond {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(1))?;
        match self {
            Self::Content(id) => m.serialize_entry("content", id)?,
            Self::Absent => m.serialize_entry("content", &None::<ObjectId>)?,
        }
        m.end()
    }
}

#[derive(serde::Serialize)]
struct OpJson<'a> {
    path: &'a str,
    action: Action,
    reason: Reason,
    conflict: bool,
    from: Option<&'a str>,
    then: Option<Action>,
    base: Option<&'a Leaf>,
    local: Option<&'a Leaf>,
    remote: Option<&'a Leaf>,
    precondition: &'a Precondition,
    skipped: Option<Action>,
}

impl serde::Serialize for Op {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        OpJson {
            path: &self.path,
            action: self.action,
            reason: self.reason,
            conflict: self.is_conflict(),
            from: self.from.as_deref(),
            then: self.then,
            base: self.sides.base.as_ref(),
            local: self.sides.local.as_ref(),
            remote: self.sides.remote.as_ref(),
            precondition: &self.precondition,
            skipped: self.skipped,
        }
        .serialize(s)
    }
}

#[derive(serde::Serialize)]
struct PlanJson<'a> {
    version: u32,
    mode: Mode,
    ops: &'a [Op],
    stats: &'a PlanStats,
}

impl serde::Serialize for Plan {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        PlanJson { version: PLAN_VERSION, mode: self.mode, ops: &self.ops, stats: &self.stats }.serialize(s)
    }
}

//! What applying a plan does, described once: the steps of a run's one transaction, in order.
//! Each backend executes every step its own way (prepared statements reused on SQLite, `COPY`
//! and array statements on PostgreSQL), with the run bookkeeping SQL of [`crate::runs::sql`].

use rosterflow_plan::Plan;

use crate::StoreError;

/// One step of applying a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// The district's row, created on its first run.
    District,
    /// Refuses the plan if a run of the district committed since its state was read.
    Fence,
    /// The run's row: a new run with its events checkpoint, or the approval of a held one.
    Run,
    /// A new district's row names the run that made it.
    DistrictMadeBy,
    /// Rows matched to the records of the district's new source take their new keys.
    Rekey,
    /// Every synced table's creates, updates, restores and archives, referenced tables first.
    Tables,
    /// Memberships that start, end or change.
    Memberships,
    /// A change row per change, for history and reports.
    ChangeLog,
    /// New teachers' accounts and their welcome emails.
    Accounts,
    /// Transform decisions that start or stop being in force.
    Decisions,
    /// The records the source sent that could not be loaded.
    Quarantine,
    /// The run's finishing time.
    Finish,
}

/// The steps that apply `plan`, in order: the run's bookkeeping first (its rows ids are what
/// every later write refers to), then the writes, then the run's end.
pub(crate) fn program(plan: &Plan<'_>) -> Vec<Step> {
    let mut steps = vec![Step::District, Step::Fence, Step::Run];
    if plan.creates_district() {
        steps.push(Step::DistrictMadeBy);
    }
    if plan
        .state
        .switch
        .as_ref()
        .is_some_and(|s| !s.matches.is_empty())
    {
        steps.push(Step::Rekey);
    }
    steps.extend([
        Step::Tables,
        Step::Memberships,
        Step::ChangeLog,
        Step::Accounts,
        Step::Decisions,
        Step::Quarantine,
        Step::Finish,
    ]);
    steps
}

/// [`Step::Fence`]: a plan is applied only to the state it was computed from, whose last
/// committed run must still be the district's.
pub(crate) fn fence(plan: &Plan<'_>, last_run: Option<i64>) -> Result<(), StoreError> {
    if last_run == plan.state.last_run {
        Ok(())
    } else {
        Err(StoreError::Stale {
            planned: plan.state.last_run,
            now: last_run,
        })
    }
}

#[cfg(test)]
mod tests {
    use rosterflow_model::{District, Entity, Snapshot};
    use rosterflow_plan::schema::layout;
    use rosterflow_plan::state::{Existing, State, TableState};

    use super::*;

    fn snapshot() -> Snapshot {
        Snapshot {
            district: District {
                id: "5a25ff950a5f621109000001".into(),
                name: "Springfield".into(),
                ..District::default()
            },
            ..Snapshot::default()
        }
    }

    #[test]
    fn a_first_load_records_its_run_then_names_it_on_the_new_district() {
        let snapshot = snapshot();
        let state = State::default();
        let steps = program(&Plan::compute(&snapshot, &state));
        assert_eq!(
            steps,
            [
                Step::District,
                Step::Fence,
                Step::Run,
                Step::DistrictMadeBy,
                Step::Tables,
                Step::Memberships,
                Step::ChangeLog,
                Step::Accounts,
                Step::Decisions,
                Step::Quarantine,
                Step::Finish,
            ]
        );
    }

    #[test]
    fn a_later_run_leaves_the_district_as_it_was_made() {
        let snapshot = snapshot();
        let columns = layout(Entity::District).columns.len();
        let mut district = TableState::new(columns);
        let row = Existing {
            id: 1,
            archived: false,
            school: None,
            year: None,
        };
        district
            .push(snapshot.district.id.clone(), row, vec![0; columns])
            .expect("one row");
        let state = State {
            district: Some(1),
            last_run: Some(7),
            tables: [(Entity::District, district)].into(),
            ..State::default()
        };
        let plan = Plan::compute(&snapshot, &state);
        let steps = program(&plan);
        assert!(!steps.contains(&Step::DistrictMadeBy), "{steps:?}");
        assert_eq!(steps.first(), Some(&Step::District));
        assert_eq!(steps.last(), Some(&Step::Finish));
        assert!(fence(&plan, Some(7)).is_ok());
        assert!(matches!(
            fence(&plan, Some(8)),
            Err(StoreError::Stale {
                planned: Some(7),
                now: Some(8)
            })
        ));
    }
}

//! OneRoster REST services, 1.1 (`.../ims/oneroster/v1p1`) and 1.2
//! (`.../ims/oneroster/rostering/v1p2`): `[source] type = "oneroster_rest"`.
//!
//! The records are read into the raw roster the CSV source builds (`super::feed`) and mapped
//! by the same table ([`super`]): the same grades, subjects, roles, terms, district and
//! quarantine rules. A quarantined record's origin is its URL
//! (`<base>/users/<sourcedId>`; a 1.2 role's, its user's with `#roles/<n>`).
//!
//! # Layout
//!
//! - `client`: OAuth 2 client credentials, the token cached and renewed, GETs retried.
//! - `page`: a page's records, its paging headers and status envelope, and when to stop.
//! - `record`: a JSON record flattened to the CSV binding's columns.
//!
//! # Pulling
//!
//! The collections `orgs`, `academicSessions`, `courses`, `classes`, `users` (1.1 users carry
//! `role` and `orgs`, 1.2 users `roles`) and `enrollments` are pulled side by side, each
//! page by page with `limit` and `offset` (see `page` for when a collection ends), as the spec
//! orders them (no `sort`: not every service sorts).
//!
//! # Full and delta pulls
//!
//! With `sync = "full"`, every run pulls every collection. With `sync = "delta"`, a run with
//! the raw roster of the last pull asks each collection only for the records changed since
//! that pull started (`filter=dateLastModified>'<time>'`, ten minutes earlier for clocks that
//! disagree; a record sent twice changes nothing): `active` records are added or replace
//! theirs, `tobedeleted` records are removed, a 1.2 user's roles go with the user. A full pull
//! happens instead when there is no saved roster (or it is of another service or version), and
//! every `full_sync_every_days`: a service that does not serve `tobedeleted` records can only
//! show deletions by what a full pull lacks.

mod client;
mod page;
mod record;

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde_json::Value;
use url::Url;

use super::feed::{
    Batch, Binding, Class, CourseRecord, Enrollment, Org, Problem, Read, Reader, Record,
    RoleRecord, Roster, Session, User,
};
use super::manifest::{CsvFile, Mode, Version};
use super::snapshot;
use crate::config::{OneRosterRestConfig, RestSyncMode, RestVersion};
use crate::{ExtractError, Recorder};
use client::Client;
use page::Paging;
use record::Place;
use rosterflow_model::{Id, Snapshot, blocking, packed};

/// A delta pull asks for the records changed this many minutes before the last pull started:
/// a service's clock may be behind ours.
const DELTA_OVERLAP_MINUTES: i64 = 10;

/// How a pull read the service. The names (`full`, `delta`) are stored with the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr, strum::VariantArray)]
#[strum(serialize_all = "snake_case", const_into_str)]
pub enum RestPullKind {
    /// Every collection, whole.
    Full,
    /// The records changed since the last pull, applied to its roster.
    Delta,
}

impl RestPullKind {
    pub const fn as_str(self) -> &'static str {
        self.into_str()
    }
}

/// What the district's last pull left, as its run saved it.
#[derive(Debug, Clone, Copy)]
pub struct RestPrevious<'a> {
    /// The raw roster it returned ([`RestPull::roster`]).
    pub roster: &'a [u8],
    /// When the district was last pulled whole ([`RestPull::full_sync_at`]).
    pub full_sync_at: DateTime<Utc>,
}

/// What a pull brought.
#[derive(Debug)]
pub struct RestPull {
    pub snapshot: Snapshot,
    pub kind: RestPullKind,
    /// The raw roster after this pull ([`packed`]), which knows when the pull started: pass it
    /// back to the next [`pull_rest`], saved with the run that applies this pull.
    pub roster: Vec<u8>,
    /// When the district was last pulled whole: now for a full pull.
    pub full_sync_at: DateTime<Utc>,
    /// One line for the run's history: `delta: 12 records changed since 2026-12-07 02:00 UTC
    /// (OneRoster 1.2 REST)`.
    pub note: String,
}

/// Pulls the service `config` names: the changes since `previous` (with `sync = "delta"`), or
/// every collection. `now` is the run's time, which decides when a full pull is due.
pub async fn pull_rest(
    config: &OneRosterRestConfig,
    previous: Option<RestPrevious<'_>>,
    now: DateTime<Utc>,
) -> Result<RestPull, ExtractError> {
    let service = Service::of(config)?;
    // Unpacking a large roster takes CPU: off the reactor's other tasks.
    let plan = blocking(|| plan(config, &service, previous, now));
    let since = match &plan {
        Plan::Full { reason } => {
            tracing::info!(service = %service.base, %reason, "pulling every collection");
            None
        }
        Plan::Delta { roster, .. } => {
            let since = roster.read_at - chrono::Duration::minutes(DELTA_OVERLAP_MINUTES);
            tracing::info!(service = %service.base, %since, "pulling the changes");
            Some(since)
        }
    };
    // Changes made while the collections are read are asked for again next time.
    let started = Utc::now();
    let collected = collect(config, &service, since, None).await?;
    blocking(|| assemble(config, &service, plan, collected, started, now))
}

/// Pulls every collection, recording each page into `recorder` when given: what `rosterflow
/// pull --record` does.
pub(crate) async fn pull(
    config: &OneRosterRestConfig,
    recorder: Option<&Recorder>,
) -> Result<Snapshot, ExtractError> {
    let service = Service::of(config)?;
    let started = Utc::now();
    let collected = collect(config, &service, None, recorder).await?;
    let plan = Plan::Full {
        reason: "a pull without a saved roster".to_owned(),
    };
    blocking(|| assemble(config, &service, plan, collected, started, started))
        .map(|pull| pull.snapshot)
}

/// A service's API root and version.
#[derive(Debug)]
pub(crate) struct Service {
    /// The API root as configured, without a trailing `/`: the roster keeps it.
    base: String,
    url: Url,
    version: Version,
}

impl Service {
    fn of(config: &OneRosterRestConfig) -> Result<Service, ExtractError> {
        let version = match RestVersion::of(config) {
            Some(RestVersion::V1_1) => Version::V1_1,
            Some(RestVersion::V1_2) => Version::V1_2,
            None => {
                return Err(ExtractError::Service {
                    status: 0,
                    url: config.base_url.clone(),
                    message: "cannot tell the OneRoster version: set source.version".to_owned(),
                });
            }
        };
        Service::new(&config.base_url, version)
    }

    fn new(base_url: &str, version: Version) -> Result<Service, ExtractError> {
        let bad = |source| ExtractError::BadUrl {
            what: "source.base_url",
            url: base_url.to_owned(),
            source,
        };
        let url = Url::parse(base_url).map_err(bad)?;
        if url.cannot_be_a_base() {
            return Err(bad(url::ParseError::RelativeUrlWithCannotBeABaseBase));
        }
        Ok(Service {
            base: base_url.trim_end_matches('/').to_owned(),
            url,
            version,
        })
    }

    /// `<base>/<collection>`.
    fn collection_url(&self, file: CsvFile) -> Url {
        let mut url = self.url.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty().push(file.name());
        }
        url
    }

    /// One page of a collection: `limit`, `offset`, and the filter when given.
    fn page_url(&self, file: CsvFile, limit: u32, offset: u64, filter: Option<&str>) -> Url {
        let mut url = self.collection_url(file);
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("limit", &limit.to_string());
            query.append_pair("offset", &offset.to_string());
            if let Some(filter) = filter {
                query.append_pair("filter", filter);
            }
        }
        url
    }
}

/// The URL of record `id` of `file` at the service whose API root is `base_url`, its id
/// percent-encoded as a path segment; a 1.2 role's is its user's, with `#roles/<n>`.
pub(crate) fn record_url(base_url: &str, file: CsvFile, id: &str) -> String {
    let (collection, id, fragment) = match (file, role_user(id)) {
        (CsvFile::Roles, Some((user, n))) => ("users", user, Some(format!("roles/{n}"))),
        (CsvFile::Roles, None) => ("users", id, None),
        (file, _) => (file.name(), id, None),
    };
    match Url::parse(base_url) {
        Ok(mut url) if !url.cannot_be_a_base() => {
            if let Ok(mut segments) = url.path_segments_mut() {
                segments.pop_if_empty().push(collection).push(id);
            }
            url.set_fragment(fragment.as_deref());
            url.into()
        }
        _ => format!("{}/{collection}/{id}", base_url.trim_end_matches('/')),
    }
}

/// The id of a 1.2 user's `n`th role (counted from 0): roles have no id of their own in REST.
fn role_id(user: &str, n: usize) -> String {
    format!("{user}#roles/{n}")
}

/// The user and index of a role id made by [`role_id`].
fn role_user(id: &str) -> Option<(&str, usize)> {
    let (user, n) = id.rsplit_once("#roles/")?;
    Some((user, n.parse().ok()?))
}

/// A filter clause `field<op>'value'`, a quote in the value doubled.
fn clause(field: &str, op: &str, value: &str) -> String {
    format!("{field}{op}'{}'", value.replace('\'', "''"))
}

/// The filter of a delta pull: records changed after `since` (whole seconds, UTC).
fn changed_since(since: DateTime<Utc>) -> String {
    clause(
        "dateLastModified",
        ">",
        &since.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    )
}

/// What a pull will do.
enum Plan {
    Full {
        /// Why, for the run's note.
        reason: String,
    },
    Delta {
        /// The last pull's roster, which the changes apply to.
        roster: Box<Roster>,
        full_sync_at: DateTime<Utc>,
    },
}

/// A delta pull when the last pull's roster is this service's and no full pull is due.
fn plan(
    config: &OneRosterRestConfig,
    service: &Service,
    previous: Option<RestPrevious<'_>>,
    now: DateTime<Utc>,
) -> Plan {
    let full = |reason: String| Plan::Full { reason };
    if config.sync == RestSyncMode::Full {
        return full("sync = \"full\"".to_owned());
    }
    let Some(previous) = previous else {
        return full("no saved roster: the whole district".to_owned());
    };
    let days = config.full_sync_every_days;
    if now - previous.full_sync_at >= chrono::Duration::days(days.into()) {
        return full(format!("a full pull every {days} days"));
    }
    let roster: Box<Roster> = match packed::unpack(previous.roster) {
        Ok(roster) => roster,
        Err(error) => {
            tracing::warn!(%error, "the saved roster cannot be read: a full pull instead");
            return full("the saved roster cannot be read".to_owned());
        }
    };
    match &roster.binding {
        Binding::Rest { base_url } if *base_url == service.base => {}
        Binding::Rest { .. } => {
            return full("the saved roster is of another service".to_owned());
        }
        Binding::Csv => return full("the saved roster is of a CSV feed".to_owned()),
    }
    if roster.version != service.version {
        return full(format!(
            "the saved roster is OneRoster {}",
            roster.version.as_str()
        ));
    }
    Plan::Delta {
        roster,
        full_sync_at: previous.full_sync_at,
    }
}

/// Every collection as read: whole, or the changes a filter asked for.
struct Collected {
    orgs: Batch<Org>,
    sessions: Batch<Session>,
    courses: Batch<CourseRecord>,
    classes: Batch<Class>,
    users: Batch<User>,
    /// The 1.2 users' roles, of the users read.
    roles: Batch<RoleRecord>,
    enrollments: Batch<Enrollment>,
}

impl Collected {
    /// How many records came (roles are part of their users).
    fn len(&self) -> usize {
        self.orgs.len()
            + self.sessions.len()
            + self.courses.len()
            + self.classes.len()
            + self.users.len()
            + self.enrollments.len()
    }

    /// Puts every collection into `roster`: replacing it (bulk), or applying the changes
    /// (delta), a changed user's roles replaced by those it came with. Returns a delta's
    /// problems that have no id.
    fn load(self, roster: &mut Roster, mode: Mode) -> Vec<(CsvFile, Problem)> {
        let mut passing = Vec::new();
        let mut keep = |file: CsvFile, problems: Vec<Problem>| {
            passing.extend(problems.into_iter().map(|p| (file, p)));
        };
        keep(CsvFile::Orgs, roster.orgs.load_batch(self.orgs, mode));
        keep(
            CsvFile::AcademicSessions,
            roster.sessions.load_batch(self.sessions, mode),
        );
        keep(
            CsvFile::Courses,
            roster.courses.load_batch(self.courses, mode),
        );
        keep(
            CsvFile::Classes,
            roster.classes.load_batch(self.classes, mode),
        );
        let changed: HashSet<Id> = self.users.ids().cloned().collect();
        keep(CsvFile::Users, roster.users.load_batch(self.users, mode));
        if mode == Mode::Delta {
            let of_changed = |id: &Id| role_user(id).is_some_and(|(u, _)| changed.contains(u));
            roster
                .roles
                .rows
                .retain(|role| !changed.contains(&role.user));
            roster
                .roles
                .problems
                .retain(|p| !p.id.as_ref().is_some_and(of_changed));
        }
        keep(CsvFile::Roles, roster.roles.load_batch(self.roles, mode));
        keep(
            CsvFile::Enrollments,
            roster.enrollments.load_batch(self.enrollments, mode),
        );
        passing
    }
}

/// How the collections are asked for.
struct Query {
    limit: u32,
    filter: Option<String>,
    /// Delta rows (status and date required) when filtered.
    mode: Mode,
}

/// Pulls every collection side by side (of the changes since `since`, when given).
async fn collect(
    config: &OneRosterRestConfig,
    service: &Service,
    since: Option<DateTime<Utc>>,
    recorder: Option<&Recorder>,
) -> Result<Collected, ExtractError> {
    let client = Client::new(config)?;
    let query = Query {
        limit: config.limit,
        filter: since.map(changed_since),
        mode: if since.is_some() {
            Mode::Delta
        } else {
            Mode::Bulk
        },
    };
    let (c, s, q) = (&client, service, &query);
    let (orgs, sessions, courses, classes, (users, roles), enrollments) = tokio::try_join!(
        collection::<Org>(c, s, q, recorder),
        collection::<Session>(c, s, q, recorder),
        collection::<CourseRecord>(c, s, q, recorder),
        collection::<Class>(c, s, q, recorder),
        users(c, s, q, recorder),
        collection::<Enrollment>(c, s, q, recorder),
    )?;
    Ok(Collected {
        orgs,
        sessions,
        courses,
        classes,
        users,
        roles,
        enrollments,
    })
}

/// Reads every page of the collection of `R`.
async fn collection<R: Record>(
    client: &Client,
    service: &Service,
    query: &Query,
    recorder: Option<&Recorder>,
) -> Result<Batch<R>, ExtractError> {
    let mut reader = Reader::<R>::new(query.mode, service.version);
    each_page(
        client,
        service,
        R::FILE,
        query,
        recorder,
        |page, records, first| {
            for (index, value) in (0..).zip(records) {
                let at = Place {
                    service,
                    file: R::FILE,
                    page,
                    index,
                    line: first + index as u64,
                };
                reader.push(record::flat(at, value, service.version).map_err(|p| *p));
            }
        },
    )
    .await?;
    Ok(reader.finish())
}

/// Reads every page of users, and the roles of the 1.2 users read.
async fn users(
    client: &Client,
    service: &Service,
    query: &Query,
    recorder: Option<&Recorder>,
) -> Result<(Batch<User>, Batch<RoleRecord>), ExtractError> {
    let version = service.version;
    let mut users = Reader::<User>::new(query.mode, version);
    // Roles come without a status of their own: those of a user read are active.
    let mut roles = Reader::<RoleRecord>::new(Mode::Bulk, version);
    let mut role_line = 0;
    each_page(
        client,
        service,
        CsvFile::Users,
        query,
        recorder,
        |page, records, first| {
            for (index, value) in (0..).zip(records) {
                let at = Place {
                    service,
                    file: CsvFile::Users,
                    page,
                    index,
                    line: first + index as u64,
                };
                let read = users.push(record::flat(at, value, version).map_err(|p| *p));
                if read != Read::Record || version != Version::V1_2 {
                    continue;
                }
                let (Value::Object(object), Some(id)) = (value, record::sourced_id(value)) else {
                    continue;
                };
                for role in record::roles(at, &id, object, &mut role_line) {
                    roles.push(Ok::<_, Problem>(role));
                }
            }
        },
    )
    .await?;
    Ok((users.finish(), roles.finish()))
}

/// Asks for the pages of one collection until the last, handing each page's records to `take`
/// with the page's URL and the place of its first record in the collection (from 1).
async fn each_page(
    client: &Client,
    service: &Service,
    file: CsvFile,
    query: &Query,
    recorder: Option<&Recorder>,
    mut take: impl FnMut(&str, &[Value], u64),
) -> Result<(), ExtractError> {
    let mut paging = Paging::new(query.limit);
    let mut line = 1;
    let mut pages = 0;
    let mut previous_first: Option<String> = None;
    loop {
        let url = service.page_url(file, query.limit, paging.offset(), query.filter.as_deref());
        let origin = url.to_string();
        let (body, page) = client
            .get(&url, |body, headers| {
                page::read(body, headers, file.name(), &origin)
            })
            .await?;
        pages += 1;
        if let Some(recorder) = recorder {
            recorder.save_file(&format!("{}-{pages:04}.json", file.name()), &body)?;
        }
        drop(body);
        let first = page.records.first().and_then(record::sourced_id);
        if paging.offset() > 0 && first.is_some() && first == previous_first {
            if paging.probing() {
                // A short page served again for the next offset: it was the whole collection.
                break;
            }
            return Err(ExtractError::Service {
                status: 200,
                url: origin,
                message: "the page at this offset repeats the one before: the service seems to ignore offset".to_owned(),
            });
        }
        previous_first = first;
        let records = page.records.len() as u64;
        blocking(|| take(&origin, &page.records, line));
        line += records;
        tracing::debug!(
            collection = file.name(),
            page = pages,
            records,
            "page received"
        );
        tracing::info!(target: rosterflow_model::PROGRESS, "pulling {}: {} records", file.name(), line - 1);
        if !paging.next(records, page.total, page.next) {
            break;
        }
    }
    tracing::info!(
        collection = file.name(),
        pages,
        records = line - 1,
        "collection pulled"
    );
    Ok(())
}

/// Loads what was collected into the roster the plan names, and maps it.
fn assemble(
    config: &OneRosterRestConfig,
    service: &Service,
    plan: Plan,
    collected: Collected,
    started: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<RestPull, ExtractError> {
    let records = collected.len();
    let version = service.version.as_str();
    let (roster, passing, kind, note, full_sync_at) = match plan {
        Plan::Full { reason } => {
            let binding = Binding::Rest {
                base_url: service.base.clone(),
            };
            let mut roster = Roster::new(service.version, started, binding);
            let passing = collected.load(&mut roster, Mode::Bulk);
            let note = format!("full: OneRoster {version} REST, {records} records ({reason})");
            (roster, passing, RestPullKind::Full, note, now)
        }
        Plan::Delta {
            mut roster,
            full_sync_at,
        } => {
            let over = roster.read_at;
            roster.read_at = started;
            let passing = collected.load(&mut roster, Mode::Delta);
            let roster = *roster;
            let note = format!(
                "delta: {records} records changed since {} (OneRoster {version} REST)",
                over.format("%Y-%m-%d %H:%M UTC")
            );
            (roster, passing, RestPullKind::Delta, note, full_sync_at)
        }
    };
    let snapshot = snapshot::build(
        &roster,
        &passing,
        config.district.as_deref(),
        &config.sis_id,
    )?;
    let roster = packed::pack(&roster).map_err(|source| ExtractError::Roster { source })?;
    tracing::info!(service = %service.base, kind = kind.as_str(), "{note}");
    Ok(RestPull {
        snapshot,
        kind,
        roster,
        full_sync_at,
        note,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::config::SourceConfig;

    const BASE: &str = "https://sis.example.org/ims/oneroster/rostering/v1p2";

    fn config(fields: &str) -> OneRosterRestConfig {
        let source: SourceConfig = serde_json::from_str(&format!(
            r#"{{"type": "oneroster_rest", "base_url": "{BASE}",
                "token_url": "https://sis.example.org/oauth/token", "client_id": "rf",
                "client_secret": "s" {fields}}}"#
        ))
        .expect("config");
        match source {
            SourceConfig::OneRosterRest(config) => config,
            other => panic!("{other:?}"),
        }
    }

    fn time(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("time")
            .with_timezone(&Utc)
    }

    #[test]
    fn pages_ask_for_limit_offset_and_the_filter_encoded() {
        let service = Service::new(&format!("{BASE}/"), Version::V1_2).expect("service");
        assert_eq!(
            service
                .page_url(CsvFile::AcademicSessions, 1000, 0, None)
                .as_str(),
            format!("{BASE}/academicSessions?limit=1000&offset=0")
        );
        let filter = changed_since(time("2026-12-07T10:15:30.750Z"));
        assert_eq!(filter, "dateLastModified>'2026-12-07T10:15:30Z'");
        assert_eq!(
            service
                .page_url(CsvFile::Users, 100, 200, Some(&filter))
                .as_str(),
            format!(
                "{BASE}/users?limit=100&offset=200&filter=dateLastModified%3E%272026-12-07T10%3A15%3A30Z%27"
            )
        );
        assert_eq!(
            clause("familyName", "=", "O'Brien"),
            "familyName='O''Brien'"
        );
        let v1p1 =
            Service::new("http://127.0.0.1:9/ims/oneroster/v1p1", Version::V1_1).expect("service");
        assert_eq!(
            v1p1.collection_url(CsvFile::Enrollments).as_str(),
            "http://127.0.0.1:9/ims/oneroster/v1p1/enrollments"
        );
        assert!(Service::new("mailto:x@y", Version::V1_1).is_err());
    }

    #[test]
    fn a_records_url_names_it_percent_encoded() {
        assert_eq!(
            record_url(BASE, CsvFile::Users, "a/../b|c d+e"),
            format!("{BASE}/users/a%2F..%2Fb|c%20d+e")
        );
        assert_eq!(
            record_url(&format!("{BASE}/"), CsvFile::AcademicSessions, "t1"),
            format!("{BASE}/academicSessions/t1")
        );
        let role = role_id("u#roles/1", 2);
        assert_eq!(role_user(&role), Some(("u#roles/1", 2)));
        assert_eq!(
            record_url(BASE, CsvFile::Roles, &role),
            format!("{BASE}/users/u%23roles%2F1#roles/2")
        );
        assert_eq!(role_user("u1"), None);
    }

    #[test]
    fn a_delta_pull_needs_a_recent_roster_of_this_service() {
        let delta = config(r#", "sync": "delta", "full_sync_every_days": 7"#);
        let service = Service::of(&delta).expect("service");
        let now = time("2026-12-07T10:00:00Z");
        let packed = |base: &str, version: Version, binding: bool| {
            let binding = match binding {
                true => Binding::Rest {
                    base_url: base.to_owned(),
                },
                false => Binding::Csv,
            };
            packed::pack(&Roster::new(version, now, binding)).expect("pack")
        };
        let ours = packed(BASE, Version::V1_2, true);
        fn previous(roster: &[u8], days: i64) -> Option<RestPrevious<'_>> {
            Some(RestPrevious {
                roster,
                full_sync_at: time("2026-12-07T10:00:00Z") - chrono::Duration::days(days),
            })
        }
        let reason = |plan: Plan| match plan {
            Plan::Full { reason } => reason,
            Plan::Delta { .. } => "delta".to_owned(),
        };
        assert_eq!(
            reason(plan(&delta, &service, previous(&ours, 6), now)),
            "delta"
        );
        assert_eq!(
            reason(plan(&delta, &service, previous(&ours, 7), now)),
            "a full pull every 7 days"
        );
        assert_eq!(
            reason(plan(&delta, &service, None, now)),
            "no saved roster: the whole district"
        );
        let full = config("");
        assert_eq!(
            reason(plan(&full, &service, previous(&ours, 0), now)),
            "sync = \"full\""
        );
        let elsewhere = packed("https://other.example.org/v1p2", Version::V1_2, true);
        assert_eq!(
            reason(plan(&delta, &service, previous(&elsewhere, 0), now)),
            "the saved roster is of another service"
        );
        let csv = packed(BASE, Version::V1_2, false);
        assert_eq!(
            reason(plan(&delta, &service, previous(&csv, 0), now)),
            "the saved roster is of a CSV feed"
        );
        let older = packed(BASE, Version::V1_1, true);
        assert_eq!(
            reason(plan(&delta, &service, previous(&older, 0), now)),
            "the saved roster is OneRoster 1.1"
        );
        assert_eq!(
            reason(plan(&delta, &service, previous(b"garbage", 0), now)),
            "the saved roster cannot be read"
        );
    }

    /// Reads `records` of each collection as one page each, as a pull in `mode` would.
    fn collected(service: &Service, mode: Mode, pages: &[(CsvFile, Vec<Value>)]) -> Collected {
        let version = service.version;
        let mut orgs = Reader::<Org>::new(mode, version);
        let mut sessions = Reader::<Session>::new(mode, version);
        let mut courses = Reader::<CourseRecord>::new(mode, version);
        let mut classes = Reader::<Class>::new(mode, version);
        let mut users = Reader::<User>::new(mode, version);
        let mut roles = Reader::<RoleRecord>::new(Mode::Bulk, version);
        let mut enrollments = Reader::<Enrollment>::new(mode, version);
        let mut role_line = 0;
        for (file, records) in pages {
            for (index, value) in records.iter().enumerate() {
                let at = Place {
                    service,
                    file: *file,
                    page: "https://h/page",
                    index,
                    line: index as u64 + 1,
                };
                let flat = record::flat(at, value, version).map_err(|p| *p);
                match file {
                    CsvFile::Orgs => {
                        orgs.push(flat);
                    }
                    CsvFile::AcademicSessions => {
                        sessions.push(flat);
                    }
                    CsvFile::Courses => {
                        courses.push(flat);
                    }
                    CsvFile::Classes => {
                        classes.push(flat);
                    }
                    CsvFile::Enrollments => {
                        enrollments.push(flat);
                    }
                    CsvFile::Users => {
                        if users.push(flat) == Read::Record {
                            let id = record::sourced_id(value).expect("id");
                            let object = value.as_object().expect("object");
                            for role in record::roles(at, &id, object, &mut role_line) {
                                roles.push(Ok::<_, Problem>(role));
                            }
                        }
                    }
                    CsvFile::Roles => unreachable!("roles come with users"),
                }
            }
        }
        Collected {
            orgs: orgs.finish(),
            sessions: sessions.finish(),
            courses: courses.finish(),
            classes: classes.finish(),
            users: users.finish(),
            roles: roles.finish(),
            enrollments: enrollments.finish(),
        }
    }

    fn user(id: &str, first: &str, role: &str, status: &str) -> Value {
        json!({
            "sourcedId": id, "status": status, "dateLastModified": "2026-12-07T09:00:00Z",
            "enabledUser": "true", "username": id, "givenName": first, "familyName": "Doe",
            "identifier": format!("SIS-{id}"),
            "roles": [{"roleType": "primary", "role": role, "org": {"sourcedId": "s1"}}]
        })
    }

    fn enrollment(id: &str, user: &str, role: &str, status: &str) -> Value {
        json!({"sourcedId": id, "status": status, "dateLastModified": "2026-12-07T09:00:00Z",
               "class": {"sourcedId": "k1"}, "school": {"sourcedId": "s1"},
               "user": {"sourcedId": user}, "role": role, "primary": "false"})
    }

    fn district() -> Vec<(CsvFile, Vec<Value>)> {
        vec![
            (
                CsvFile::Orgs,
                vec![
                    json!({"sourcedId": "d1", "status": "active", "name": "Springfield", "type": "district"}),
                    json!({"sourcedId": "s1", "status": "active", "name": "Elementary", "type": "school",
                           "parent": {"sourcedId": "d1"}}),
                ],
            ),
            (
                CsvFile::AcademicSessions,
                vec![json!({"sourcedId": "t1", "title": "Fall", "type": "term",
                            "startDate": "2026-08-15", "endDate": "2026-12-20", "schoolYear": 2027})],
            ),
            (
                CsvFile::Classes,
                vec![
                    json!({"sourcedId": "k1", "title": "Math", "classType": "scheduled",
                            "school": {"sourcedId": "s1"}, "terms": [{"sourcedId": "t1"}],
                            "subjects": ["math"], "grades": ["03"]}),
                ],
            ),
            (
                CsvFile::Users,
                vec![
                    user("u1", "Ana", "student", "active"),
                    user("u2", "Bo", "student", "active"),
                    user("u3", "Cy", "teacher", "active"),
                ],
            ),
            (
                CsvFile::Enrollments,
                vec![
                    enrollment("e1", "u1", "student", "active"),
                    enrollment("e2", "u2", "student", "active"),
                    enrollment("e3", "u3", "teacher", "active"),
                ],
            ),
        ]
    }

    fn load(service: &Service, plan: Plan, pages: &[(CsvFile, Vec<Value>)]) -> RestPull {
        let mode = match plan {
            Plan::Full { .. } => Mode::Bulk,
            Plan::Delta { .. } => Mode::Delta,
        };
        let now = time("2026-12-07T10:00:00Z");
        let collected = collected(service, mode, pages);
        assemble(&config(""), service, plan, collected, now, now).expect("assembled")
    }

    #[test]
    fn a_delta_applies_changes_removals_and_a_users_new_roles() {
        let service = Service::new(BASE, Version::V1_2).expect("service");
        let full = load(
            &service,
            Plan::Full {
                reason: "test".into(),
            },
            &district(),
        );
        assert_eq!(full.kind, RestPullKind::Full);
        assert_eq!(full.note, "full: OneRoster 1.2 REST, 10 records (test)");
        assert_eq!(full.snapshot.students.len(), 2);
        assert_eq!(full.snapshot.sections[0].students, ["u1", "u2"]);
        assert!(
            full.snapshot.quarantine.is_empty(),
            "{:?}",
            full.snapshot.quarantine
        );

        // u1 leaves, u2 is renamed, u3 becomes a student.
        let changes = vec![
            (
                CsvFile::Users,
                vec![
                    user("u1", "Ana", "student", "tobedeleted"),
                    user("u2", "Bob", "student", "active"),
                    user("u3", "Cy", "student", "active"),
                ],
            ),
            (
                CsvFile::Enrollments,
                vec![
                    enrollment("e1", "u1", "student", "tobedeleted"),
                    enrollment("e3", "u3", "student", "active"),
                ],
            ),
        ];
        let roster: Box<Roster> = packed::unpack(&full.roster).expect("roster");
        let full_sync_at = time("2026-12-01T00:00:00Z");
        let delta = load(
            &service,
            Plan::Delta {
                roster,
                full_sync_at,
            },
            &changes,
        );
        assert_eq!(delta.kind, RestPullKind::Delta);
        assert_eq!(delta.full_sync_at, full_sync_at);
        assert!(
            delta
                .note
                .starts_with("delta: 5 records changed since 2026-12-07 10:00 UTC"),
            "{}",
            delta.note
        );
        let s = &delta.snapshot;
        let names: Vec<(&str, Option<&str>)> = s
            .students
            .iter()
            .map(|x| (x.id.as_str(), x.name.first.as_deref()))
            .collect();
        assert_eq!(names, [("u2", Some("Bob")), ("u3", Some("Cy"))]);
        assert!(
            s.teachers.is_empty(),
            "u3's teacher role went with the change"
        );
        assert_eq!(s.sections[0].students, ["u2", "u3"]);
        assert!(s.quarantine.is_empty(), "{:?}", s.quarantine);
        let roster: Roster = packed::unpack(&delta.roster).expect("roster");
        assert_eq!(roster.roles.rows.len(), 2);
    }

    #[test]
    fn a_dangling_reference_is_quarantined_at_the_records_url() {
        let service = Service::new(BASE, Version::V1_2).expect("service");
        let mut pages = district();
        pages[4]
            .1
            .push(enrollment("e/9", "nobody", "student", "active"));
        let pulled = load(
            &service,
            Plan::Full {
                reason: "test".into(),
            },
            &pages,
        );
        let q = &pulled.snapshot.quarantine;
        assert_eq!(q.len(), 1, "{q:?}");
        assert_eq!(
            q[0].origin.as_deref(),
            Some(format!("{BASE}/enrollments/e%2F9").as_str())
        );
    }

    /// `rosterflow serve` runs pulls on its workers: the future must be `Send`.
    #[test]
    fn a_pull_can_run_on_any_thread() {
        fn send<T: Send>(_: &T) {}
        let config = config("");
        let now = time("2026-12-07T10:00:00Z");
        send(&pull_rest(&config, None, now));
        send(&pull(&config, None));
    }

    /// The names are stored with each run.
    #[test]
    fn pull_kinds_keep_their_stored_names() {
        let names: Vec<&str> = <RestPullKind as strum::VariantArray>::VARIANTS
            .iter()
            .map(|k| k.as_str())
            .collect();
        assert_eq!(names, ["full", "delta"]);
    }
}

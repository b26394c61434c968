//! Signing in with Clever through `rosterflow serve`, the real binary, against the simulator's
//! OAuth endpoints: a browser (here, a cookie jar and no redirects followed) goes from the start
//! URL to Clever and back, and the test exchanges the grant as the Freckle app would. On SQLite
//! and PostgreSQL.

use std::collections::BTreeMap;
use std::time::Duration;

use rosterflow_tests::clever_sim::{CleverSim, Fault, Login, SimOptions, SsoApp};
use rosterflow_tests::district::{Collection, Dataset, GenSpec, Role, generate};
use serde_json::Value;

use crate::serve::{Service, free_port};
use crate::util::{Backend, TestDb, pipeline_text, rosterflow};

const CLIENT_ID: &str = "freckle-sso-app";
const CLIENT_SECRET: &str = "clever-client-secret-0123456789";
pub(crate) const APP_SECRET: &str = "freckle-app-secret-0123456789abcdef";
pub(crate) const LANDING: &str = "http://127.0.0.1:9/freckle/landing";

/// A browser: cookies by name, redirects not followed.
#[derive(Default)]
pub(crate) struct Browser {
    cookies: BTreeMap<String, String>,
}

/// One answer: status, `Location`, body.
struct Answer {
    status: u16,
    location: Option<String>,
    body: String,
}

impl Browser {
    async fn get(&mut self, url: &str) -> Answer {
        self.send(client().get(url)).await
    }

    /// A form POST.
    async fn post(&mut self, url: &str, form: &str) -> Answer {
        let request = client()
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.to_owned());
        self.send(request).await
    }

    async fn send(&mut self, mut request: reqwest::RequestBuilder) -> Answer {
        if !self.cookies.is_empty() {
            let cookies: Vec<String> = self
                .cookies
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect();
            request = request.header("cookie", cookies.join("; "));
        }
        let response = request.send().await.expect("an answer");
        for value in response.headers().get_all("set-cookie") {
            let value = value.to_str().expect("a text cookie");
            let (pair, attributes) = value.split_once(';').unwrap_or((value, ""));
            let (name, cookie) = pair.split_once('=').expect("name=value");
            if attributes.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), cookie.to_owned());
            }
        }
        Answer {
            status: response.status().as_u16(),
            location: response
                .headers()
                .get("location")
                .map(|value| value.to_str().expect("a text location").to_owned()),
            body: response.text().await.expect("a body"),
        }
    }
}

/// An HTTP client that follows no redirect.
fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client")
}

/// Where a sign-in ended.
#[derive(Debug)]
enum Ended {
    /// At the app's landing URL with this grant.
    Landed(String),
    /// On a page of the service: its status and text.
    Page(u16, String),
}

fn grant_of(landing: &str, location: &str) -> Option<String> {
    let url = url::Url::parse(location).ok()?;
    url.as_str()
        .starts_with(landing)
        .then(|| {
            url.query_pairs()
                .find(|(k, _)| k == "grant")
                .map(|(_, v)| v.into_owned())
        })
        .flatten()
}

/// A district on the simulator, its pipeline in a served directory, synced once.
pub(crate) struct World {
    pub(crate) db: TestDb,
    pub(crate) sim: CleverSim,
    service: Option<Service>,
    port: u16,
    pub(crate) district: String,
    pipeline: std::path::PathBuf,
    /// Where the service sends a signed-in person: [`LANDING`] unless a test serves an app.
    pub(crate) landing: String,
    /// The app's own start of a login, if it has one.
    app_start: Option<String>,
}

impl World {
    pub(crate) async fn new(backend: Backend, dataset: Dataset, extra: &str) -> World {
        let db = TestDb::new(backend).await;
        let district = dataset.ids(Collection::Districts)[0].clone();
        let sim = CleverSim::start(dataset, SimOptions::with_token("token-sso")).await;
        let port = free_port();
        sim.register_app(SsoApp {
            client_id: CLIENT_ID.to_owned(),
            client_secret: CLIENT_SECRET.to_owned(),
            redirect_uris: vec![format!("http://127.0.0.1:{port}/sign-in/clever/callback")],
        });
        let dir = db.dir.path().join("pipelines");
        std::fs::create_dir_all(&dir).expect("the pipeline directory");
        let source = format!(
            "type = \"clever\"\nbase_url = \"{}\"\ntoken = \"token-sso\"\nlimit = 1000\ntimeout_secs = 30\nmax_attempts = 2\nbackoff_base_ms = 10",
            sim.base_url()
        );
        let text = pipeline_text("sso", &source, &db.url, extra).replacen(
            "[pipeline]\n",
            &format!("[pipeline]\ndistrict_id = \"{district}\"\n"),
            1,
        );
        let pipeline = dir.join("sso.toml");
        std::fs::write(&pipeline, text).expect("write the pipeline");
        let world = World {
            db,
            sim,
            service: None,
            port,
            district,
            pipeline,
            landing: LANDING.to_owned(),
            app_start: None,
        };
        world.sync();
        world
    }

    /// Runs the pipeline through the binary.
    fn sync(&self) {
        let (code, stdout, stderr) = rosterflow(&["run", self.pipeline.to_str().unwrap()], &[]);
        assert!(code == 0 || code == 1, "sync: {code}\n{stdout}{stderr}");
    }

    pub(crate) fn start(&mut self) -> &Service {
        let redirect = format!("http://127.0.0.1:{}/sign-in/clever/callback", self.port);
        let landing = self.landing.clone();
        let app_start: Vec<String> = self
            .app_start
            .iter()
            .flat_map(|url| ["--app-start-url".to_owned(), url.clone()])
            .collect();
        let base = self.sim.base_url();
        let service = Service::start_at(
            self.port,
            self.db.dir.path(),
            &self.db.url,
            "sso",
            &[
                "--clever-client-id",
                CLIENT_ID,
                "--clever-redirect-uri",
                &redirect,
                "--app-landing-url",
                &landing,
                "--clever-oauth-url",
                &base,
                "--clever-api-url",
                &base,
                "--email-every-secs",
                "1",
            ]
            .into_iter()
            .chain(app_start.iter().map(String::as_str))
            .collect::<Vec<_>>(),
            &[
                ("ROSTERFLOW_CLEVER_CLIENT_SECRET", CLIENT_SECRET),
                ("ROSTERFLOW_APP_SECRET", APP_SECRET),
                ("ROSTERFLOW_ADMIN_TOKEN", "admin-token-0123456789"),
            ],
        );
        self.service = Some(service);
        self.service.as_ref().unwrap()
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// From the start URL to wherever the service sends the browser, signed in to Clever as
    /// `login`.
    async fn sign_in(&self, browser: &mut Browser, login: &Login) -> Ended {
        self.sign_in_from(browser, "/sign-in/clever", login).await
    }

    /// The same, from the start URL `start` (with the app's `app_state`, say).
    async fn sign_in_from(&self, browser: &mut Browser, start: &str, login: &Login) -> Ended {
        let start = browser.get(&self.url(start)).await;
        assert_eq!(start.status, 303, "{}", start.body);
        self.follow(browser, login, start.location.expect("to Clever"))
            .await
    }

    /// Goes on from a redirect to Clever's authorize URL.
    async fn follow(&self, browser: &mut Browser, login: &Login, authorize: String) -> Ended {
        assert!(authorize.starts_with(&self.sim.base_url()), "{authorize}");
        self.sim.sign_in_as(Some(login.clone()));
        let at_clever = browser.get(&authorize).await;
        assert_eq!(at_clever.status, 302, "{}", at_clever.body);
        let callback = at_clever.location.expect("back to the service");
        self.arrive(browser, &callback).await
    }

    /// The browser arrives at the redirect URI.
    async fn arrive(&self, browser: &mut Browser, callback: &str) -> Ended {
        let answer = browser.get(callback).await;
        match answer
            .location
            .as_deref()
            .and_then(|location| grant_of(&self.landing, location))
        {
            Some(grant) => Ended::Landed(grant),
            None => Ended::Page(answer.status, answer.body),
        }
    }

    /// The app's exchange of a grant: (status, JSON).
    async fn exchange(&self, grant: &str, secret: &str) -> (u16, Value) {
        let response = client()
            .post(self.url("/sign-in/grants"))
            .bearer_auth(secret)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("grant={grant}"))
            .send()
            .await
            .expect("an answer");
        let status = response.status().as_u16();
        let body = response.text().await.expect("a body");
        (status, serde_json::from_str(&body).unwrap_or(Value::Null))
    }

    /// The account a sign-in handed over.
    async fn account(&self, login: &Login) -> Value {
        let mut browser = Browser::default();
        match self.sign_in(&mut browser, login).await {
            Ended::Landed(grant) => {
                let (status, account) = self.exchange(&grant, APP_SECRET).await;
                assert_eq!(status, 200, "{account}");
                account
            }
            Ended::Page(status, page) => panic!("{login:?} ended on a page {status}: {page}"),
        }
    }

    /// The page a refused sign-in ends on.
    async fn refused(&self, login: &Login) -> (u16, String) {
        match self.sign_in(&mut Browser::default(), login).await {
            Ended::Page(status, page) => (status, page),
            Ended::Landed(_) => panic!("{login:?} was let in"),
        }
    }

    async fn row_id(&self, table: &str, clever_id: &str) -> i64 {
        self.db
            .scalar(&format!(
                "SELECT id FROM {table} WHERE source_id = '{clever_id}'"
            ))
            .await
    }

    fn explain(&self, kind: &str, id: &str) -> String {
        let (code, stdout, stderr) =
            rosterflow(&["explain", self.pipeline.to_str().unwrap(), kind, id], &[]);
        assert_eq!(code, 0, "{stdout}{stderr}");
        stdout
    }

    pub(crate) fn service(&self) -> &Service {
        self.service.as_ref().expect("started")
    }
}

pub(crate) fn small_district(seed: u64) -> Dataset {
    generate(GenSpec::new(60).with_seed(seed))
}

/// A teacher who is also staff (the generator's multi-role user).
fn multi_role_teacher(dataset: &Dataset) -> String {
    dataset
        .ids_with_role(Role::Teacher)
        .into_iter()
        .find(|id| dataset.ids_with_role(Role::Staff).contains(id))
        .expect("the generator makes a teacher who is also staff")
}

async fn synced_people_sign_in(backend: Backend) {
    let dataset = small_district(31);
    let teacher = dataset.ids_with_role(Role::Teacher)[0].clone();
    let student = dataset.ids_with_role(Role::Student)[0].clone();
    let coach = multi_role_teacher(&dataset);
    let admin = dataset.ids_with_role(Role::DistrictAdmin)[0].clone();
    let mut world = World::new(backend, dataset, "").await;
    world.start();

    // A teacher and a student land in their own accounts.
    let account = world.account(&Login::user(&teacher, "teacher")).await;
    assert_eq!(account["kind"], "teacher");
    assert_eq!(account["id"], world.row_id("teachers", &teacher).await);
    assert_eq!(account["clever_id"], teacher.as_str());
    assert_eq!(account["district"]["key"], world.district.as_str());
    assert_eq!(account["district"]["clever_id"], world.district.as_str());
    let sis: Vec<String> = world
        .db
        .rows(&format!(
            "SELECT sis_id FROM teachers WHERE source_id = '{teacher}'"
        ))
        .await;
    assert_eq!(account["sis_id"], sis[0].as_str());
    assert_eq!(account["app_state"], Value::Null);
    // The app's own value for a login comes back with its grant.
    let Ended::Landed(grant) = world
        .sign_in_from(
            &mut Browser::default(),
            "/sign-in/clever?app_state=nonce-1.a_b~c",
            &Login::user(&teacher, "teacher"),
        )
        .await
    else {
        panic!("a login with app_state lands");
    };
    let (_, account) = world.exchange(&grant, APP_SECRET).await;
    assert_eq!(account["app_state"], "nonce-1.a_b~c");
    let refused = Browser::default()
        .get(&world.url("/sign-in/clever?app_state=%3Cscript%3E"))
        .await;
    assert_eq!(refused.status, 400);
    let account = world.account(&Login::user(&student, "student")).await;
    assert_eq!(account["kind"], "student");
    assert_eq!(account["id"], world.row_id("students", &student).await);

    // A user with several roles signs in as the role of this login.
    let account = world.account(&Login::user(&coach, "teacher")).await;
    assert_eq!(account["id"], world.row_id("teachers", &coach).await);
    let (status, page) = world.refused(&Login::user(&coach, "staff")).await;
    assert_eq!(status, 403);
    assert!(page.contains("no account for this role"), "{page}");
    // A district admin signs in to the console, not to the app.
    let Ended::Page(status, page) = world
        .sign_in(
            &mut Browser::default(),
            &Login::user(&admin, "district_admin"),
        )
        .await
    else {
        panic!("a district admin is not sent to the app");
    };
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("console"), "{page}");

    // A user of a district this service does not serve: nothing about anyone else.
    let (status, page) = world
        .refused(&Login::foreign(
            "5b0d2a8a1b2c3d4e5f607181",
            "5b0d2a8a1b2c3d4e5f607182",
            "teacher",
        ))
        .await;
    assert_eq!(status, 403);
    assert!(page.contains("not connected"), "{page}");
    assert!(!page.contains(&world.district), "{page}");

    // A login Clever starts (the portal) has no state: it is sent back to Clever with a fresh
    // one, and its own code is never exchanged.
    let (exchanged_before, _) = world.sim.code_exchanges();
    let mut browser = Browser::default();
    let portal = world
        .sim
        .portal_login_url(&Login::user(&teacher, "teacher"));
    assert!(!portal.contains("state="), "{portal}");
    let bounced = browser.get(&portal).await;
    assert_eq!(bounced.status, 303, "{}", bounced.body);
    let authorize = bounced.location.expect("back to Clever");
    assert!(authorize.contains("state="), "{authorize}");
    let Ended::Landed(grant) = world
        .follow(&mut browser, &Login::user(&teacher, "teacher"), authorize)
        .await
    else {
        panic!("the portal login lands");
    };
    assert_eq!(world.sim.code_exchanges().0, exchanged_before + 1);

    // The grant works once, and only for the app.
    let (status, _) = world.exchange(&grant, "not-the-app-secret-at-all").await;
    assert_eq!(status, 401);
    let (status, account) = world.exchange(&grant, APP_SECRET).await;
    assert_eq!(status, 200);
    assert_eq!(account["clever_id"], teacher.as_str());
    let (status, answer) = world.exchange(&grant, APP_SECRET).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    let service = world.service();
    // Signed in: teacher (twice), student, coach as teacher, portal teacher.
    assert_eq!(
        service.sample("rosterflow_sso_logins_total", &[("outcome", "signed_in")]),
        Some(5.0)
    );
    assert_eq!(
        service.sample(
            "rosterflow_sso_logins_total",
            &[("outcome", "role_not_served")]
        ),
        Some(1.0)
    );
    assert_eq!(
        service.sample("rosterflow_sso_logins_total", &[("outcome", "console")]),
        Some(1.0)
    );
    assert_eq!(
        service.sample(
            "rosterflow_sso_logins_total",
            &[("outcome", "unknown_district")]
        ),
        Some(1.0)
    );
    let log = service.log();
    for secret in [CLIENT_SECRET, APP_SECRET, grant.as_str()] {
        assert!(!log.contains(secret), "the log shows a secret");
    }
    assert_eq!(
        world.db.scalar("SELECT COUNT(*) FROM sign_ins").await,
        8,
        "every sign-in and refusal is logged"
    );
}

async fn forged_and_replayed_logins_are_refused(backend: Backend) {
    let dataset = small_district(32);
    let teacher = dataset.ids_with_role(Role::Teacher)[0].clone();
    let login = Login::user(&teacher, "teacher");
    let mut world = World::new(backend, dataset, "").await;
    world.app_start = Some("http://127.0.0.1:9/freckle/start".to_owned());
    world.start();

    // A login Clever starts goes through the app's own start, which binds it to the browser.
    let portal = world.sim.portal_login_url(&login);
    let bounced = Browser::default().get(&portal).await;
    assert_eq!(bounced.status, 303);
    assert_eq!(
        bounced.location.as_deref(),
        Some("http://127.0.0.1:9/freckle/start")
    );

    // A code that reached the service once is never exchanged again, even with a fresh state.
    let mut browser = Browser::default();
    let start = browser.get(&world.url("/sign-in/clever")).await;
    world.sim.sign_in_as(Some(login.clone()));
    let callback = browser
        .get(&start.location.unwrap())
        .await
        .location
        .expect("a code");
    assert!(matches!(
        world.arrive(&mut browser, &callback).await,
        Ended::Landed(_)
    ));
    let (exchanged, _) = world.sim.code_exchanges();
    let code = url::Url::parse(&callback)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let again = browser.get(&world.url("/sign-in/clever")).await;
    let state = url::Url::parse(&again.location.unwrap())
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let replay = world.url(&format!(
        "/sign-in/clever/callback?code={code}&state={state}"
    ));
    let Ended::Page(status, page) = world.arrive(&mut browser, &replay).await else {
        panic!("a replayed code is refused");
    };
    assert_eq!(status, 400);
    assert!(page.contains("already used"), "{page}");
    assert_eq!(
        world.sim.code_exchanges().0,
        exchanged,
        "Clever was not asked"
    );

    // The callback of a login this browser did not start (a state from elsewhere, or none of
    // its cookie) is refused; so is a state used twice.
    let mut victim = Browser::default();
    let mut attacker = Browser::default();
    let start = attacker.get(&world.url("/sign-in/clever")).await;
    world.sim.sign_in_as(Some(login.clone()));
    let callback = attacker
        .get(&start.location.unwrap())
        .await
        .location
        .unwrap();
    let Ended::Page(status, _) = world.arrive(&mut victim, &callback).await else {
        panic!("a login started by another browser is refused");
    };
    assert_eq!(status, 400);
    let mut forged = Browser::default();
    forged
        .cookies
        .insert("__Host-rosterflow_sign_in".into(), "00".repeat(32));
    let start = forged.get(&world.url("/sign-in/clever")).await;
    forged
        .cookies
        .insert("__Host-rosterflow_sign_in".into(), "00".repeat(32));
    let callback = forged.get(&start.location.unwrap()).await.location.unwrap();
    let Ended::Page(status, _) = world.arrive(&mut forged, &callback).await else {
        panic!("a state that does not match the cookie is refused");
    };
    assert_eq!(status, 400);

    // Clever's own refusal of a code (expired at Clever) ends on a page, not an error.
    let service = world.service();
    assert_eq!(
        service.sample("rosterflow_sso_logins_total", &[("outcome", "bad_state")]),
        Some(2.0)
    );
    assert_eq!(
        service.sample(
            "rosterflow_sso_logins_total",
            &[("outcome", "code_refused")]
        ),
        Some(1.0)
    );
    // Clever down at the token endpoint: a page that says so, and the next try works.
    world.sim.inject_on("/oauth/tokens", Fault::Status(503));
    let Ended::Page(status, page) = world.sign_in(&mut Browser::default(), &login).await else {
        panic!("a sign-in with Clever down ends on a page");
    };
    assert_eq!(status, 502);
    assert!(page.contains("Clever could not be reached"), "{page}");
    assert!(matches!(
        world.sign_in(&mut Browser::default(), &login).await,
        Ended::Landed(_)
    ));
    assert_eq!(
        world.service().sample(
            "rosterflow_sso_logins_total",
            &[("outcome", "clever_error")]
        ),
        Some(1.0)
    );

    // Refusals that name no one add no rows: only the sign-ins are stored.
    assert_eq!(world.db.scalar("SELECT COUNT(*) FROM sign_ins").await, 2);
}

async fn left_out_archived_and_just_in_time(backend: Backend) {
    let dataset = small_district(33);
    let teachers = dataset.ids_with_role(Role::Teacher);
    let filtered = teachers[1].clone();
    let filtered_email = dataset.get(Collection::Users, &filtered).unwrap()["email"]
        .as_str()
        .expect("an email")
        .to_owned();
    let leaving = dataset.ids_with_role(Role::Student)[0].clone();
    let student = dataset.ids_with_role(Role::Student)[1].clone();
    // Teachers hired today (in Clever, not yet synced); one of them the filter leaves out.
    let hired = new_user(
        &dataset,
        &teachers[0],
        "5f00000000000000000000a1",
        "hired.today@example.org",
    );
    let parked = new_user(
        &dataset,
        &teachers[0],
        "5f00000000000000000000a2",
        "parked@example.org",
    );
    let busy = new_user(
        &dataset,
        &teachers[0],
        "5f00000000000000000000a3",
        "hired.busy@example.org",
    );
    let new_student = new_user(
        &dataset,
        &student,
        "5f00000000000000000000a4",
        "new.student@example.org",
    );
    let extra = format!(
        "[sign_in]\njust_in_time = true\n\n[[transform]]\ntype = \"filter\"\nteacher_emails = [\"{filtered_email}\", \"parked@example.org\"]\n"
    );
    let mut world = World::new(backend, dataset, &extra).await;
    world.sim.update(|d| {
        d.remove_user(&leaving);
    });
    world.sync();
    world.sim.update(|d| {
        for (_, record) in [&hired, &parked, &new_student] {
            d.upsert(Collection::Users, record.clone());
        }
    });
    world.start();
    let (hired, parked, new_student) = (&hired.0, &parked.0, &new_student.0);

    // Left out by the filter, and archived: each says so, on the page and in `explain`.
    let (status, page) = world.refused(&Login::user(&filtered, "teacher")).await;
    assert_eq!(status, 403);
    assert!(page.contains("leave you out"), "{page}");
    let explained = world.explain("teacher", &filtered);
    assert!(
        explained.contains("sign in with Clever: no: left out by filter"),
        "{explained}"
    );
    // Clever may still sign in a student the roster has stopped listing (its login outlives
    // the roster by a while): a login of the district the data API no longer serves.
    let (status, page) = world
        .refused(&Login::foreign(&leaving, &world.district, "student"))
        .await;
    assert_eq!(status, 403);
    assert!(page.contains("closed"), "{page}");
    let explained = world.explain("student", &leaving);
    assert!(
        explained.contains("sign in with Clever: no: archived"),
        "{explained}"
    );
    let explained = world.explain("student", &student);
    assert!(
        explained.contains("sign in with Clever: yes"),
        "{explained}"
    );
    // Students are never created at sign-in.
    let (status, page) = world.refused(&Login::user(new_student, "student")).await;
    assert_eq!(status, 403);
    assert!(page.contains("not ready yet"), "{page}");

    // A teacher hired today gets their account at their first sign-in, with one welcome email;
    // signing in again finds the same account.
    let account = world.account(&Login::user(hired, "teacher")).await;
    assert_eq!(account["kind"], "teacher");
    assert_eq!(account["email"], "hired.today@example.org");
    let row = world.row_id("teachers", hired).await;
    assert_eq!(account["id"], row);
    let emails_of =
        |row: i64| format!("SELECT COUNT(*) FROM email_outbox WHERE teacher_id = {row}");
    assert_eq!(world.db.scalar(&emails_of(row)).await, 1);
    let again = world.account(&Login::user(hired, "teacher")).await;
    assert_eq!(again["id"], row);
    world.account(&Login::user(parked, "teacher")).await;
    let parked_row = world.row_id("teachers", parked).await;

    // The next sync finds them: no duplicate, no second email; the one the filter leaves out
    // is archived, and can no longer sign in.
    world.sync();
    assert_eq!(world.row_id("teachers", hired).await, row);
    let rows_of = |id: &str| format!("SELECT COUNT(*) FROM teachers WHERE source_id = '{id}'");
    assert_eq!(world.db.scalar(&rows_of(hired)).await, 1);
    assert_eq!(world.db.scalar(&rows_of(parked)).await, 1);
    assert_eq!(world.db.scalar(&emails_of(row)).await, 1);
    assert_eq!(
        world
            .db
            .rows(&format!("SELECT CASE WHEN archived_at IS NULL THEN 1 ELSE 0 END FROM teachers WHERE id IN ({row}, {parked_row}) ORDER BY id"))
            .await,
        ["1", "0"]
    );
    let (status, _) = world.refused(&Login::user(parked, "teacher")).await;
    assert_eq!(status, 403);

    // A teacher who signs in while a run of the district is under way waits for it: one row
    // and one welcome email, whoever made the row.
    world.sim.update(|d| {
        d.upsert(Collection::Users, busy.1.clone());
    });
    world
        .sim
        .inject_on("/v3.0/sections", Fault::Slow(Duration::from_secs(4)));
    let pipeline = world.pipeline.clone();
    let run = std::thread::spawn(move || rosterflow(&["run", pipeline.to_str().unwrap()], &[]));
    let requested = || {
        world
            .sim
            .requests()
            .iter()
            .any(|r| r.uri.starts_with("/v3.0/sections"))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !requested() {
        assert!(
            std::time::Instant::now() < deadline,
            "the run never pulled sections"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let account = world.account(&Login::user(&busy.0, "teacher")).await;
    let (code, out, err) = run.join().expect("the run");
    assert!(code == 0 || code == 1, "{out}{err}");
    let row = world.row_id("teachers", &busy.0).await;
    assert_eq!(account["id"], row);
    assert_eq!(world.db.scalar(&rows_of(&busy.0)).await, 1);
    assert_eq!(world.db.scalar(&emails_of(row)).await, 1);
    assert_eq!(
        world
            .db
            .scalar("SELECT COUNT(*) FROM sync_runs WHERE status = 'failed'")
            .await,
        0
    );
}

/// A user like `like` (same school and roles), with its own id, name, email and SIS id.
fn new_user(dataset: &Dataset, like: &str, id: &str, email: &str) -> (String, Value) {
    let mut record = dataset.get(Collection::Users, like).expect("a user");
    record["id"] = Value::String(id.to_owned());
    record["email"] = Value::String(email.to_owned());
    record["name"]["first"] = Value::String("New".into());
    record["name"]["last"] = Value::String(email.split('@').next().unwrap().into());
    let roles = record["roles"].as_object_mut().expect("roles");
    roles.remove("staff");
    for role in roles.values_mut() {
        if role.get("sis_id").is_some() {
            role["sis_id"] = Value::String(format!("NEW-{}", &id[20..]));
        }
    }
    (id.to_owned(), record)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synced_people_sign_in_on_sqlite() {
    synced_people_sign_in(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synced_people_sign_in_on_postgres() {
    synced_people_sign_in(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_replayed_logins_are_refused_on_sqlite() {
    forged_and_replayed_logins_are_refused(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_replayed_logins_are_refused_on_postgres() {
    forged_and_replayed_logins_are_refused(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn left_out_archived_and_just_in_time_on_sqlite() {
    left_out_archived_and_just_in_time(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn left_out_archived_and_just_in_time_on_postgres() {
    left_out_archived_and_just_in_time(Backend::Postgres).await;
}

/// Sign-in settings that cannot work stop the service at start, saying what is wrong (exit 78).
#[test]
fn incomplete_sign_in_settings_are_refused_at_start() {
    let dir = tempfile::tempdir().expect("a directory");
    let pipelines = dir.path().to_str().unwrap();
    let database = format!("sqlite://{}/freckle.db", pipelines);
    let serve = |extra: &[&str], env: &[(&str, &str)]| {
        let mut args = vec!["serve", "--pipelines", pipelines, "--database", &database];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--listen", "127.0.0.1:0"]);
        rosterflow(&args, env)
    };
    let (code, _, stderr) = serve(&["--clever-client-id", CLIENT_ID], &[]);
    assert_eq!(code, 78, "{stderr}");
    for missing in [
        "ROSTERFLOW_CLEVER_CLIENT_SECRET",
        "--clever-redirect-uri",
        "--app-landing-url",
        "ROSTERFLOW_APP_SECRET",
    ] {
        assert!(stderr.contains(missing), "{stderr}");
    }
    let (code, _, stderr) = serve(
        &[
            "--clever-client-id",
            CLIENT_ID,
            "--clever-redirect-uri",
            "https://sync.example.org/oauth/callback",
            "--app-landing-url",
            "https://freckle.example.org/landing",
        ],
        &[
            ("ROSTERFLOW_CLEVER_CLIENT_SECRET", CLIENT_SECRET),
            ("ROSTERFLOW_APP_SECRET", "short"),
        ],
    );
    assert_eq!(code, 78, "{stderr}");
    assert!(stderr.contains("/sign-in/clever/callback"), "{stderr}");
    assert!(
        stderr.contains("ROSTERFLOW_APP_SECRET is shorter"),
        "{stderr}"
    );
    assert!(!stderr.contains(CLIENT_SECRET), "{stderr}");
}

/// The `csrf` value of the first form of a console page.
fn csrf_of(page: &str) -> String {
    let at = page
        .find("name=\"csrf\" value=\"")
        .expect("a form with a CSRF token");
    let rest = &page[at + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

/// A district administrator signs in to the console with Clever and sees their district only:
/// another district's pipeline, runs, downloads and actions answer as if they did not exist. The
/// operator sees both, lists the sessions and ends the administrator's, which ends it at once.
async fn district_admin_console(backend: Backend) {
    let dataset = small_district(34);
    let admin = dataset.ids_with_role(Role::DistrictAdmin)[0].clone();
    let admin_email = dataset.get(Collection::Users, &admin).unwrap()["email"]
        .as_str()
        .expect("an email")
        .to_owned();
    let mut world = World::new(backend, dataset, "").await;
    // A second district in the same Freckle DB and service.
    let other = CleverSim::start(small_district(35), SimOptions::with_token("token-other")).await;
    let other_district = other.read(|d| d.ids(Collection::Districts)[0].clone());
    let source = format!(
        "type = \"clever\"\nbase_url = \"{}\"\ntoken = \"token-other\"\nlimit = 1000",
        other.base_url()
    );
    let text = pipeline_text("other", &source, &world.db.url, "").replacen(
        "[pipeline]\n",
        &format!("[pipeline]\ndistrict_id = \"{other_district}\"\n"),
        1,
    );
    let other_pipeline = world.pipeline.with_file_name("other.toml");
    std::fs::write(&other_pipeline, text).expect("write the pipeline");
    let (code, out, err) = rosterflow(&["run", other_pipeline.to_str().unwrap()], &[]);
    assert!(code == 0 || code == 1, "{out}{err}");
    world.start();
    let run_of =
        |pipeline: &str| format!("SELECT MAX(id) FROM sync_runs WHERE pipeline = '{pipeline}'");
    let own_run = world.db.scalar(&run_of("sso")).await;
    let other_run = world.db.scalar(&run_of("other")).await;

    let mut browser = Browser::default();
    let Ended::Page(200, _) = world
        .sign_in(&mut browser, &Login::user(&admin, "district_admin"))
        .await
    else {
        panic!("the district admin signs in to the console");
    };
    let home = browser.get(&world.url("/")).await;
    assert_eq!(home.status, 200, "{}", home.body);
    assert!(home.body.contains("/pipelines/sso"), "{}", home.body);
    // A link from an email, opened signed out: the sign-in page offers Clever with the page
    // to land on, and the administrator lands there.
    let mut signed_out = Browser::default();
    let asked = signed_out
        .get(&world.url(&format!("/runs/{own_run}")))
        .await;
    assert_eq!(asked.status, 303);
    let login_page = signed_out
        .get(&world.url(&asked.location.expect("to sign in")))
        .await;
    let start = format!("/sign-in/clever?next=%2Fruns%2F{own_run}");
    assert!(login_page.body.contains(&start), "{}", login_page.body);
    let Ended::Page(200, landed) = world
        .sign_in_from(
            &mut signed_out,
            &start,
            &Login::user(&admin, "district_admin"),
        )
        .await
    else {
        panic!("the district admin signs in to the console");
    };
    let landing = format!("/runs/{own_run}?signed_in=1");
    assert!(landed.contains(&format!("url={landing}")), "{landed}");
    assert_eq!(signed_out.get(&world.url(&landing)).await.status, 200);
    let page = signed_out.get(&world.url("/")).await;
    let csrf = format!("csrf={}", csrf_of(&page.body));
    assert_eq!(
        signed_out.post(&world.url("/logout"), &csrf).await.status,
        303
    );
    assert!(!home.body.contains("/pipelines/other"), "{}", home.body);
    assert!(home.body.contains(&admin_email), "the header names them");
    let csrf = csrf_of(&home.body);
    for page in [
        "/pipelines/sso".to_owned(),
        format!("/runs/{own_run}"),
        format!("/runs/{own_run}/report.csv"),
        "/sign-ins".to_owned(),
    ] {
        assert_eq!(browser.get(&world.url(&page)).await.status, 200, "{page}");
    }
    for page in [
        "/pipelines/other".to_owned(),
        format!("/runs/{other_run}"),
        format!("/runs/{other_run}/report.csv"),
        "/pipelines/other/download/roster_history.csv".to_owned(),
        "/pipelines/other/download/growth.parquet".to_owned(),
        "/explain?pipeline=other&subject=student&id=x".to_owned(),
        "/sessions".to_owned(),
    ] {
        assert_eq!(browser.get(&world.url(&page)).await.status, 404, "{page}");
    }
    // Actions on the other district are refused too, and change nothing.
    let runs_before = world.db.scalar("SELECT COUNT(*) FROM sync_runs").await;
    let form = format!("csrf={csrf}");
    assert_eq!(
        browser
            .post(&world.url("/pipelines/other/run"), &form)
            .await
            .status,
        404
    );
    let discard = world.url(&format!("/runs/{other_run}/discard"));
    assert_eq!(browser.post(&discard, &form).await.status, 404);
    assert_eq!(
        browser
            .post(&world.url("/pipelines/sso/run"), "csrf=forged")
            .await
            .status,
        403
    );

    // Their own district's roster history, with every student's SIS id, as CSV and Parquet.
    let csv = browser
        .get(&world.url("/pipelines/sso/download/roster_history.csv"))
        .await;
    assert_eq!(csv.status, 200, "{}", csv.body);
    let header = csv.body.lines().next().expect("a header");
    assert!(
        header.split(',').any(|column| column == "student_sis_id"),
        "{header}"
    );
    let sis = header
        .split(',')
        .position(|column| column == "student_sis_id")
        .unwrap();
    let own_students: std::collections::BTreeSet<String> = world
        .db
        .rows(&format!(
            "SELECT s.sis_id FROM students s JOIN districts d ON d.id = s.district_id WHERE d.key = '{}'",
            world.district
        ))
        .await
        .into_iter()
        .collect();
    let rows: Vec<&str> = csv.body.lines().skip(1).collect();
    let from = header
        .split(',')
        .position(|column| column == "valid_from")
        .unwrap();
    let first = rows[0].split(',').nth(from).unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(first).is_ok(),
        "valid_from {first:?} is an RFC 3339 UTC time"
    );
    assert!(rows.len() > 10, "{} rows", rows.len());
    for row in &rows {
        let value = row.split(',').nth(sis).unwrap();
        assert!(
            own_students.contains(value),
            "{value} is not a student of the district"
        );
    }
    let parquet = browser
        .get(&world.url("/pipelines/sso/download/growth.parquet"))
        .await;
    assert_eq!(parquet.status, 200, "{}", parquet.body);
    assert_eq!(
        world.db.scalar("SELECT COUNT(*) FROM sync_runs").await,
        runs_before
    );

    // The operator sees every district and every session, and ends the administrator's.
    let mut operator = Browser::default();
    let signed_in = operator
        .post(
            &world.url("/login"),
            "user=ops&token=admin-token-0123456789",
        )
        .await;
    assert_eq!(signed_in.status, 303);
    let home = operator.get(&world.url("/")).await;
    assert!(home.body.contains("/pipelines/other"), "{}", home.body);
    let sessions = operator.get(&world.url("/sessions")).await;
    assert!(sessions.body.contains(&admin_email), "{}", sessions.body);
    let id = world
        .db
        .scalar(&format!(
            "SELECT id FROM console_sessions WHERE user_name = '{admin_email}'"
        ))
        .await;
    let ended = operator
        .post(
            &world.url(&format!("/sessions/{id}/end")),
            &format!("csrf={}", csrf_of(&sessions.body)),
        )
        .await;
    assert_eq!(ended.status, 303);
    let after = browser.get(&world.url("/pipelines/sso")).await;
    assert_eq!(
        after.location.as_deref(),
        Some("/login?next=%2Fpipelines%2Fsso"),
        "the session is over"
    );
    // Signing out ends the operator's own session in the database.
    let signed_out = operator
        .post(
            &world.url("/logout"),
            &format!("csrf={}", csrf_of(&home.body)),
        )
        .await;
    assert_eq!(signed_out.status, 303);
    assert_eq!(
        world
            .db
            .scalar("SELECT COUNT(*) FROM console_sessions")
            .await,
        0
    );
    drop(other);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn district_admin_console_on_sqlite() {
    district_admin_console(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn district_admin_console_on_postgres() {
    district_admin_console(Backend::Postgres).await;
}

//! One session channel's request, walked through the gate's phases: classify the
//! command line (or the shell / subsystem asked for), decide, hold, audit, then relay
//! between the client and a channel on the host, masking what comes back, and record.
//!
//! Runs in its own task, never in a russh callback: a hold or the host may take long,
//! and the connection (keepalives, other channels) must go on meanwhile.

use std::sync::Arc;
use std::time::Instant;

use russh::server::Msg;
use russh::{Channel, ChannelMsg, ChannelReadHalf, ChannelWriteHalf, Pty, Sig};
use tokio::sync::mpsc;

use super::classify::{Scp, ScpDirection, classify_command, scp_invocation};
use super::client::SshClient;
use super::connection::Shared;
use super::forward::Hold;
use super::inbound::Grant;
use super::output::{Output, Stream};
use super::recording::{Header, Recorded, Recording, Tape};
use super::sftp::{Direction, FileEvent, SftpObserver};
use crate::error::{Error, Result};
use crate::gate::{Combined, Effect, Refusal, ResultRecord, Unclassified, Work};
use crate::policy::{Command, Protocol, Request};
use crate::store::Store;
use portcullis_raft::model::{AuditMode, now_millis};

/// What the client asked the channel to run.
#[derive(Debug, Clone)]
pub enum Ask {
    Exec(String),
    Shell,
    Subsystem(String),
}

/// A terminal the client asked for, passed on to the host as asked.
#[derive(Debug, Clone)]
pub struct PtyAsk {
    pub term: String,
    pub cols: u32,
    pub rows: u32,
    pub pix_width: u32,
    pub pix_height: u32,
    pub modes: Vec<(Pty, u32)>,
}

/// Forwarding the client asked for with the channel, before its command: each is a
/// request of kind `forward` of its own, decided before the command starts.
#[derive(Debug, Clone, Default)]
pub struct Forwards {
    pub agent: bool,
    pub x11: Option<X11Ask>,
}

/// An X11 forwarding request, passed on to the host as asked.
#[derive(Clone)]
pub struct X11Ask {
    pub single_connection: bool,
    pub protocol: String,
    /// The client's cookie for the host (OpenSSH sends a fake one and checks it on the
    /// connections that come back). Never logged.
    pub cookie: String,
    pub screen: u32,
}

impl std::fmt::Debug for X11Ask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("X11Ask").field("protocol", &self.protocol).field("screen", &self.screen).finish_non_exhaustive()
    }
}

impl Forwards {
    /// What was asked, with its text for policy.
    fn asked(&self) -> Vec<(Grant, &'static str)> {
        let mut asked = Vec::new();
        if self.agent {
            asked.push((Grant::Agent, "agent forwarding"));
        }
        if self.x11.is_some() {
            asked.push((Grant::X11, "X11 forwarding"));
        }
        asked
    }
}

/// Everything the client asked of one channel.
#[derive(Debug)]
pub struct Asked {
    pub ask: Ask,
    pub pty: Option<PtyAsk>,
    pub forwards: Forwards,
}

/// Requests that arrive through russh callbacks while the channel runs.
#[derive(Debug)]
pub enum Control {
    WindowChange { cols: u32, rows: u32, pix_width: u32, pix_height: u32 },
    Signal(Sig),
}

/// Exit status for work the gateway refused (126: "cannot execute", as shells say).
const REFUSED: u32 = 126;
/// Exit status when the gateway itself failed (as ssh reports its own errors).
const GATEWAY_FAILED: u32 = 255;

/// Run the channel's request to its end; the channel is closed when this returns.
pub async fn run<S: Store>(
    shared: Arc<Shared<S>>,
    channel: Channel<Msg>,
    asked: Asked,
    control: mpsc::Receiver<Control>,
) {
    let (mut from_client, to_client) = channel.split();
    let status = match serve(&shared, &mut from_client, &to_client, asked, control).await {
        Ok(status) => status,
        Err(e) => {
            tracing::info!(peer = %shared.peer, error = %e, "ssh channel ended with an error");
            let _ = say(&to_client, &e.to_string()).await;
            Some(GATEWAY_FAILED)
        }
    };
    if let Some(status) = status {
        let _ = to_client.exit_status(status).await;
    }
    let _ = to_client.eof().await;
    let _ = to_client.close().await;
}

/// The channel's phases; `Some(status)` when the gateway, not the host, decides the
/// exit status the client sees.
async fn serve<S: Store>(
    shared: &Arc<Shared<S>>,
    from_client: &mut ChannelReadHalf,
    to_client: &ChannelWriteHalf<Msg>,
    asked: Asked,
    control: mpsc::Receiver<Control>,
) -> Result<Option<u32>> {
    let Asked { ask, pty, forwards } = asked;
    // Without the lease nothing is decided (the login went through so that the client
    // hears why; `ssh -q` hides the banner that says it before the login).
    if !shared.door.gate.store().is_serving() {
        say(to_client, &Refusal::LeaseLost.to_string()).await?;
        return Ok(Some(REFUSED));
    }
    let gate = shared.gate().await?;
    let recorder = gate.recorder();
    // --- classify
    let (work, request) = classify(&shared.login.resource.name, &ask);
    let mut client = SshClient {
        to_client,
        from_client,
        held: Vec::new(),
        held_max: shared.door.settings.held_input_max,
        eof: false,
        pty: pty.is_some(),
    };
    // --- decide, hold, audit (in the connection's session, shared with its other channels)
    let (judgement, mut permit) = {
        if let Err(refusal) = gate.check_lease() {
            gate.refused(&work, None, &refusal).await;
            return refuse(&client, &refusal).await;
        }
        if let Some(refusal) = unclassifiable(&request, &work) {
            let judgement = gate.decide(std::slice::from_ref(&request))?;
            if matches!(judgement.verdict, Combined::Deny { .. }) && !judgement.rules.is_empty() {
                // A deny rule's own reason is clearer than ours.
                let cleared = gate.clear(&mut client, &work, judgement).await?;
                if let Err(refusal) = cleared {
                    return refuse(&client, &refusal).await;
                }
            }
            gate.refused(&work, None, &refusal).await;
            return refuse(&client, &refusal).await;
        }
        let judgement = gate.decide(std::slice::from_ref(&request))?;
        let cleared = match gate.clear(&mut client, &work, judgement).await? {
            Ok(c) => c,
            Err(refusal) => return refuse(&client, &refusal).await,
        };
        // Every command may change the host: strict audit commits before it runs.
        match gate.audit(&[(&work, &cleared)], Effect::Writes).await {
            Ok(permit) => (cleared.judgement, permit),
            Err(refusal) => return refuse(&client, &refusal).await,
        }
    };
    if let Err(refusal) = permit.results_may_leave().await {
        return refuse(&client, &refusal).await;
    }
    // Forwarding asked with the channel: decided each on its own; a refused one is
    // said on stderr and the command runs without it (as OpenSSH does).
    let mut granted = Vec::new();
    for (grant, line) in forwards.asked() {
        match super::forward::clear(shared, &gate, &mut client, line, Hold::May).await {
            Ok(()) => granted.push(grant),
            Err(refusal) => say(to_client, &format!("{line} refused: {refusal}")).await?,
        }
    }
    // --- relay (with the permit: the record is committed)
    let started = Instant::now();
    let (held, client_eof) = (std::mem::take(&mut client.held), client.eof);
    let upstream = shared.upstream().await?;
    let host = upstream.open_session().await?;
    if let Some(p) = &pty {
        host.request_pty(false, &p.term, p.cols, p.rows, p.pix_width, p.pix_height, &p.modes)
            .await
            .map_err(|e| host_error(shared, format!("request a terminal: {e}")))?;
    }
    for grant in granted {
        match (&grant, &forwards.x11) {
            (Grant::Agent, _) => host.agent_forward(false).await,
            (Grant::X11, Some(x)) => {
                host.request_x11(false, x.single_connection, &x.protocol, &x.cookie, x.screen).await
            }
            _ => Ok(()),
        }
        .map_err(|e| host_error(shared, format!("ask for forwarding: {e}")))?;
        shared.grant(grant);
    }
    match &ask {
        Ask::Exec(line) => host.exec(true, line.as_bytes()).await,
        Ask::Shell => host.request_shell(true).await,
        Ask::Subsystem(name) => host.request_subsystem(true, name.as_str()).await,
    }
    .map_err(|e| host_error(shared, format!("start the command: {e}")))?;
    let by_line = matches!(ask, Ask::Exec(_)) && pty.is_none();
    let mut output = Output::new(judgement.masks.clone(), by_line, shared.door.settings.preview_bytes);
    // A terminal is recorded (asciicast v2), masked like what the client sees.
    let tape = pty.as_ref().map(|p| {
        // A client without a terminal of its own (`ssh -tt` from a script) says 0x0.
        let (width, height) = (if p.cols == 0 { 80 } else { p.cols }, if p.rows == 0 { 24 } else { p.rows });
        let header = Header { width, height, timestamp: now_millis() / 1000, term: p.term.clone() };
        let settings = &shared.door.settings;
        let recording =
            Recording::new(shared.next_channel(), header, judgement.masks.clone(), settings.recording_max_bytes);
        let strict = shared.login.resource.audit == AuditMode::Strict;
        Tape::new(recording, recorder.clone(), strict)
    });
    // File transfers are followed: each file's path, direction and size on record.
    let files = match &ask {
        Ask::Subsystem(name) if name == "sftp" => Some(Files::Sftp(std::sync::Mutex::default())),
        Ask::Exec(line) => scp_invocation(line).map(|scp| Files::Scp(scp, std::sync::Mutex::new((0, 0)))),
        _ => None,
    };
    let watch = Watch { tape: tape.as_ref(), files: files.as_ref(), recorder: &recorder };
    let io = Io { from_client, to_client, held, client_eof, control };
    let ended = relay(shared, io, host, &mut output, watch).await;
    if let Some(files) = &files {
        for event in files.finish() {
            record_file(&recorder, &event).await;
        }
    }
    if let Some(tape) = &tape {
        tape.finish().await;
    }
    // --- record
    let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    let status = ended.exit_status;
    let result = ResultRecord {
        tags: vec![match (&ended.exit_status, &ended.exit_signal) {
            (Some(code), _) => format!("exit {code}"),
            (None, Some(signal)) => format!("signal {signal}"),
            (None, None) => "closed".to_string(),
        }],
        error: ended.cut_short.clone(),
        duration_ms,
        output: Some(output.record(ended.exit_status, ended.exit_signal)),
        ..ResultRecord::default()
    };
    gate.record(result).await;
    if let Some(why) = ended.cut_short {
        let _ = say(to_client, &why).await;
        return Ok(Some(status.unwrap_or(GATEWAY_FAILED)));
    }
    // The host's own exit status was relayed as it came.
    Ok(None)
}

/// Phase "classify": the request's work record and its policy request.
pub fn classify(resource: &str, ask: &Ask) -> (Work, Request) {
    // `writes` (policy `match.writes`): the line writes files by redirection; a shell,
    // a file transfer or a line the door cannot read may change anything.
    let (line, channel, kind, commands, writes) = match ask {
        Ask::Exec(line) => match scp_invocation(line) {
            Some(_) => (line.clone(), "exec", "scp", vec![named("scp")], true),
            None => {
                let seen = classify_command(line);
                let commands: Vec<Command> =
                    seen.programs.iter().map(|p| Command { name: p.name.clone(), path: p.path.clone() }).collect();
                let kind = if seen.opaque.is_some() { "unknown" } else { "exec" };
                (line.clone(), "exec", kind, commands, seen.opaque.is_some() || !seen.writes.is_empty())
            }
        },
        Ask::Shell => ("(interactive shell)".to_string(), "shell", "shell", Vec::new(), true),
        Ask::Subsystem(name) if name == "sftp" => ("(sftp)".to_string(), "subsystem", "sftp", Vec::new(), true),
        Ask::Subsystem(name) => (format!("(subsystem {name})"), "subsystem", "unknown", Vec::new(), true),
    };
    let programs: Vec<String> = commands.iter().map(|c| c.name.clone()).collect();
    let work = Work::Ssh { line: line.as_str().into(), channel, programs };
    let request = Request {
        resource: resource.to_string(),
        protocol: Protocol::Ssh,
        kind: kind.to_string(),
        tables: Vec::new(),
        functions: Vec::new(),
        commands,
        text: line,
        missing_where: false,
        dynamic_sql: false,
        locks_rows: false,
        json: Default::default(),
        path: None,
        writes,
    };
    (work, request)
}

fn named(name: &str) -> Command {
    Command { name: name.to_string(), path: name.to_string() }
}

/// Why a request the door could not read is refused (policy may still deny it first).
pub fn unclassifiable(request: &Request, work: &Work) -> Option<Refusal> {
    if request.kind != "unknown" {
        return None;
    }
    let detail = match work {
        Work::Ssh { line, .. } => match classify_command(line).opaque {
            Some(opaque) => format!("the command line cannot be judged: {opaque}"),
            None => format!("{} is not supported", request.text),
        },
        Work::Sql { .. } | Work::Http { .. } => "not a command".to_string(),
    };
    Some(Refusal::Unclassifiable { cause: Unclassified::Syntax, detail, position: None })
}

async fn refuse(client: &SshClient<'_>, refusal: &Refusal) -> Result<Option<u32>> {
    client.say(&refusal.to_string()).await?;
    Ok(Some(REFUSED))
}

async fn say(to_client: &ChannelWriteHalf<Msg>, line: &str) -> Result<()> {
    let text = format!("portcullis: {line}\r\n");
    to_client.extended_data_bytes(1, text.into_bytes()).await.map_err(|e| Error::ClientIo(format!("{e:?}")))
}

fn host_error<S: Store>(shared: &Shared<S>, detail: String) -> Error {
    Error::Backend { addr: shared.login.resource.address.clone(), detail }
}

/// How the relay ended.
struct Ended {
    exit_status: Option<u32>,
    exit_signal: Option<String>,
    /// The gateway ended it (lease lost, node stopping): why.
    cut_short: Option<String>,
}

/// A file transfer being followed.
enum Files {
    Sftp(std::sync::Mutex<SftpObserver>),
    /// Legacy scp (`scp -O`): one exec, its bytes each way (to host, to client).
    Scp(Scp, std::sync::Mutex<(u64, u64)>),
}

impl Files {
    fn saw(&self, way: Direction, data: &[u8]) -> Vec<FileEvent> {
        match self {
            Files::Sftp(observer) => observer.lock().unwrap_or_else(|p| p.into_inner()).feed(way, data),
            Files::Scp(_, bytes) => {
                let mut bytes = bytes.lock().unwrap_or_else(|p| p.into_inner());
                match way {
                    Direction::ToHost => bytes.0 += data.len() as u64,
                    Direction::ToClient => bytes.1 += data.len() as u64,
                }
                Vec::new()
            }
        }
    }

    fn finish(&self) -> Vec<FileEvent> {
        match self {
            Files::Sftp(observer) => {
                let mut observer = observer.lock().unwrap_or_else(|p| p.into_inner());
                let mut events = observer.finish();
                if let Some(lost) = observer.lost.take() {
                    events.push(FileEvent { op: "unfollowed", path: lost, to: None, bytes: 0 });
                }
                events
            }
            Files::Scp(scp, bytes) => {
                let (up, down) = *bytes.lock().unwrap_or_else(|p| p.into_inner());
                let (op, bytes) = match scp.direction {
                    ScpDirection::Upload => ("upload", up),
                    ScpDirection::Download => ("download", down),
                };
                // The scp protocol's own framing is counted in: close to the file sizes.
                vec![FileEvent { op, path: scp.path.clone(), to: None, bytes }]
            }
        }
    }
}

/// What watches the bytes as they are relayed: a terminal's recording, file transfers.
struct Watch<'a, S: Store> {
    tape: Option<&'a Tape<S>>,
    files: Option<&'a Files>,
    recorder: &'a crate::gate::Recorder<S>,
}

impl<S: Store> Watch<'_, S> {
    async fn files(&self, way: Direction, data: &[u8]) {
        let Some(files) = self.files else { return };
        for event in files.saw(way, data) {
            record_file(self.recorder, &event).await;
        }
    }
}

/// Queue a `file` record; its commit is awaited in the background.
async fn record_file<S: Store>(recorder: &crate::gate::Recorder<S>, event: &FileEvent) {
    let commit = recorder.append("file", event).await;
    tokio::spawn(async move {
        if let Ok(Err(e)) = commit.await {
            tracing::warn!(error = %e, "a file transfer's record could not be committed");
        }
    });
}

/// The client's side of the channel, as the relay gets it.
struct Io<'a> {
    from_client: &'a mut ChannelReadHalf,
    to_client: &'a ChannelWriteHalf<Msg>,
    /// Input that arrived while the request was held, and whether EOF did.
    held: Vec<u8>,
    client_eof: bool,
    control: mpsc::Receiver<Control>,
}

/// Copy both ways until the host closes the channel (or the client does, or the node
/// must stop serving, or a strict recording reaches its bound). Each direction reads
/// while the other writes.
async fn relay<S: Store>(
    shared: &Shared<S>,
    io: Io<'_>,
    host: Channel<russh::client::Msg>,
    output: &mut Output,
    watch: Watch<'_, S>,
) -> Ended {
    let tape = watch.tape;
    let Io { from_client, to_client, held, client_eof, mut control } = io;
    let (mut from_host, to_host) = host.split();
    let (mut exit_status, mut exit_signal) = (None, None);
    let mut serving = shared.door.gate.store().serving();
    let stop = shared.stop.clone();
    // Set when a strict recording is full: nothing more may be shown.
    let full = tokio::sync::Notify::new();
    let keep = |f: Box<dyn FnOnce(&mut Recording) -> Recorded + Send>| {
        let full = &full;
        async move {
            if let Some(tape) = tape
                && !tape.keep(f).await
            {
                full.notify_one();
                return false;
            }
            true
        }
    };

    let upload = async {
        if !held.is_empty() {
            let typed = held.clone();
            keep(Box::new(move |r| r.input(&typed))).await;
            watch.files(Direction::ToHost, &held).await;
            if to_host.data_bytes(held).await.is_err() {
                return;
            }
        }
        if client_eof {
            let _ = to_host.eof().await;
        }
        loop {
            tokio::select! {
                msg = from_client.wait() => match msg {
                    Some(ChannelMsg::Data { data }) => {
                        let typed = data.to_vec();
                        if !keep(Box::new(move |r| r.input(&typed))).await { return; }
                        watch.files(Direction::ToHost, &data).await;
                        if to_host.data_bytes(data).await.is_err() { return; }
                    }
                    Some(ChannelMsg::Eof) => { let _ = to_host.eof().await; }
                    Some(ChannelMsg::Close) | None => { let _ = to_host.close().await; return; }
                    Some(_) => {}
                },
                c = control.recv() => match c {
                    Some(Control::WindowChange { cols, rows, pix_width, pix_height }) => {
                        keep(Box::new(move |r| r.resize(cols, rows))).await;
                        let _ = to_host.window_change(cols, rows, pix_width, pix_height).await;
                    }
                    Some(Control::Signal(sig)) => { let _ = to_host.signal(sig).await; }
                    None => std::future::pending::<()>().await,
                },
            }
        }
    };
    let download = async {
        while let Some(msg) = from_host.wait().await {
            let sent = match msg {
                ChannelMsg::Data { data } => {
                    watch.files(Direction::ToClient, &data).await;
                    let out = output.pass(Stream::Stdout, &data);
                    let shown = out.clone();
                    if !keep(Box::new(move |r| r.output(&shown))).await {
                        break;
                    }
                    out.is_empty() || to_client.data_bytes(out).await.is_ok()
                }
                ChannelMsg::ExtendedData { data, ext } => {
                    let out = output.pass(Stream::Stderr, &data);
                    let shown = out.clone();
                    if !keep(Box::new(move |r| r.output(&shown))).await {
                        break;
                    }
                    out.is_empty() || to_client.extended_data_bytes(ext, out).await.is_ok()
                }
                ChannelMsg::Eof => {
                    flush(output, to_client).await;
                    to_client.eof().await.is_ok()
                }
                ChannelMsg::ExitStatus { exit_status: code } => {
                    flush(output, to_client).await;
                    exit_status = Some(code);
                    to_client.exit_status(code).await.is_ok()
                }
                ChannelMsg::ExitSignal { signal_name, .. } => {
                    exit_signal = Some(format!("{signal_name:?}"));
                    true
                }
                ChannelMsg::Close => break,
                _ => true,
            };
            if !sent {
                break;
            }
        }
        flush(output, to_client).await;
    };
    let cut_short = async {
        tokio::select! {
            _ = stop.cancelled() => "this Portcullis node is shutting down; the channel is closed".to_string(),
            _ = serving.wait_for(|s| !*s) => {
                "this Portcullis node lost its quorum lease; the channel is closed (retry another node)".to_string()
            }
            _ = full.notified() => "this terminal's recording reached its bound; strict audit ends the channel".to_string(),
        }
    };
    let mut cut = None;
    tokio::select! {
        // The host ends the channel; what the client still sends is moot.
        () = download => {}
        // The client is gone: close the host's side too.
        () = upload => {}
        why = cut_short => cut = Some(why),
    }
    let _ = to_host.close().await;
    Ended { exit_status, exit_signal, cut_short: cut }
}

async fn flush(output: &mut Output, to_client: &ChannelWriteHalf<Msg>) {
    let out = output.flush(Stream::Stdout);
    if !out.is_empty() {
        let _ = to_client.data_bytes(out).await;
    }
    let err = output.flush(Stream::Stderr);
    if !err.is_empty() {
        let _ = to_client.extended_data_bytes(1, err).await;
    }
}

//! The server side of the legacy scp protocol: the client runs `scp -t PATH` (upload)
//! or `scp -f PATH` (download) as an `exec` command. The door maps it to the kind `scp`.
//! (Newer OpenSSH clients speak SFTP, a subsystem request, unless given `-O`.)

use super::classify_command;

/// Which way files move, seen from the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScpDirection {
    /// `scp -t`: the client sends files to the host.
    Upload,
    /// `scp -f`: the client fetches files from the host.
    Download,
}

/// An scp server invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scp {
    pub direction: ScpDirection,
    /// The target (upload) or source (download) path, as the client sent it.
    pub path: String,
    /// `-r`: whole directories.
    pub recursive: bool,
}

/// `Some` when the whole line is exactly one `scp -t|-f [flags] [--] PATH` with nothing
/// else around it; anything more (a pipeline, a second command, an opaque word) is left
/// to [`classify_command`] and the kinds it leads to.
pub fn scp_invocation(line: &str) -> Option<Scp> {
    let classified = classify_command(line);
    if classified.opaque.is_some() || !classified.writes.is_empty() {
        return None;
    }
    let [program] = classified.programs.as_slice() else { return None };
    if program.name != "scp" || !program.args_known {
        return None;
    }
    let mut direction = None;
    let mut recursive = false;
    let mut paths = Vec::new();
    let mut options_done = false;
    for arg in &program.args {
        match arg.strip_prefix('-') {
            Some("-") if !options_done => options_done = true,
            Some(flags) if !options_done && !flags.is_empty() => {
                for flag in flags.chars() {
                    let wanted = match flag {
                        't' => ScpDirection::Upload,
                        'f' => ScpDirection::Download,
                        'r' => {
                            recursive = true;
                            continue;
                        }
                        // What OpenSSH's client passes to the server: preserve times,
                        // target must be a directory, verbose, quiet.
                        'p' | 'd' | 'v' | 'q' => continue,
                        _ => return None,
                    };
                    if direction.is_some_and(|d| d != wanted) {
                        return None;
                    }
                    direction = Some(wanted);
                }
            }
            _ => paths.push(arg.clone()),
        }
    }
    let [path] = <[String; 1]>::try_from(paths).ok()?;
    Some(Scp { direction: direction?, path, recursive })
}

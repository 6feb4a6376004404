//! `esprit-ctl [--socket PATH] [--json] COMMAND`: talks to esprit-ike over
//! its Unix control socket (one JSON line each way).
#![forbid(unsafe_code)]
use std::path::PathBuf;

use anyhow::{bail, Context};
use esprit_controlplane::control::{call, Request};

const USAGE: &str = "usage: esprit-ctl [--socket PATH] [--json] COMMAND
  list-sas                 IKE and Child SAs, SPIs, algorithms, counters
  initiate CONN            start connection CONN
  terminate IKE_SA         delete IKE SA #IKE_SA and its Child SAs
  rekey child CHILD_SA     rekey Child SA #CHILD_SA
  rekey ike IKE_SA         rekey IKE SA #IKE_SA
  reload                   re-read the configuration file
  stats                    counters and gauges
  list-groups              G-IKEv2 groups: members, SIDs, KEK/TEK generations
  group rekey GROUP        new TEKs for GROUP now (GCKS)
  group exclude GROUP ID   exclude member ID from GROUP (GCKS; it stays out)
The socket defaults to $ESPRIT_IKE_SOCKET or /run/esprit/ike.sock.";

fn num(v: Option<String>, what: &str) -> anyhow::Result<u64> {
    let v = v.with_context(|| format!("missing {what}\n{USAGE}"))?;
    v.trim_start_matches('#').parse().with_context(|| format!("{what} must be a number, not {v:?}"))
}

fn main() -> anyhow::Result<()> {
    let mut socket = std::env::var_os("ESPRIT_IKE_SOCKET").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/run/esprit/ike.sock"));
    let mut json = false;
    let mut rest = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--socket" | "-s" => socket = PathBuf::from(args.next().context("--socket needs a path")?),
            "--json" => json = true,
            "--help" | "-h" => {
                println!("{USAGE}");
                return Ok(());
            }
            _ => rest.push(a),
        }
    }
    let mut words = rest.into_iter();
    let cmd = words.next().with_context(|| format!("no command\n{USAGE}"))?;
    let req = match cmd.as_str() {
        "list-sas" => Request::ListSas,
        "initiate" => Request::Initiate { conn: words.next().with_context(|| format!("missing connection name\n{USAGE}"))? },
        "terminate" => Request::Terminate { ike_sa: num(words.next(), "IKE SA number")? },
        "rekey" => match words.next().as_deref() {
            Some("child") => Request::RekeyChild { child_sa: num(words.next(), "Child SA number")? },
            Some("ike") => Request::RekeyIke { ike_sa: num(words.next(), "IKE SA number")? },
            _ => bail!("rekey child N | rekey ike N\n{USAGE}"),
        },
        "reload" => Request::Reload,
        "stats" => Request::Stats,
        "list-groups" => Request::ListGroups,
        "group" => match words.next().as_deref() {
            Some("rekey") => Request::GroupRekey { group: words.next().with_context(|| format!("missing group\n{USAGE}"))? },
            Some("exclude") => Request::GroupExclude {
                group: words.next().with_context(|| format!("missing group\n{USAGE}"))?,
                member: words.next().with_context(|| format!("missing member identity\n{USAGE}"))?,
            },
            _ => bail!("group rekey GROUP | group exclude GROUP MEMBER\n{USAGE}"),
        },
        other => bail!("unknown command {other:?}\n{USAGE}"),
    };
    let resp = call(&socket, &req)?;
    if !resp.ok {
        bail!("{}", resp.error.unwrap_or_else(|| "failed".into()));
    }
    let data = resp.data.unwrap_or_default();
    if json {
        println!("{}", serde_json::to_string_pretty(&data)?);
    } else if req == Request::ListSas {
        print!("{}", esprit_controlplane::show::list_sas(&data));
    } else if req == Request::ListGroups {
        print!("{}", esprit_controlplane::show::list_groups(&data));
    } else {
        println!("{}", serde_json::to_string_pretty(&data)?);
    }
    Ok(())
}

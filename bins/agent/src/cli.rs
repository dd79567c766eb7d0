//! The command line, each option defined once with its help. `run` is the daemon; the other
//! subcommands check the configuration or print what an administrator runs.
//! It must never read a file or open a connection: parsing only.

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// steward-agent: reconciles this Proxmox VE node's guests towards the desired state, through
/// the node's own API. Benign changes (power, memory, CPUs, names, tags, …) are applied; anything
/// that destroys or overwrites data is held until an operator signs it with `ssh-keygen -Y sign`.
///
/// First steps: `steward-agent setup-token` prints the `pveum` commands for the agent's two
/// API tokens; `steward-agent check-config --config /etc/steward/agent.toml` checks the
/// configuration; `steward-agent run --config …` starts the daemon (systemd runs it for you).
#[derive(Parser, Debug)]
#[command(name = "steward-agent", version, verbatim_doc_comment)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Log format: human-readable text, or one JSON object per line.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// Least severe level logged: error, warn, info, debug or trace.
    #[arg(long, default_value = "info", global = true)]
    pub log_level: tracing::Level,
}

/// `pending show`.
#[derive(Subcommand, Debug)]
pub enum PendingShow {
    /// One held op.
    Show {
        /// Its id.
        id: u64,
        /// Print only the exact bytes to sign (redirect them to op.json).
        #[arg(long)]
        template: bool,
    },
}

/// `audit export`.
#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    /// Write the audit chain to stdout, one JSON object per line (each with its hash and the
    /// previous entry's): every gate decision, every op transition, and for each op that ran
    /// on the signed path the exact signed bytes with every signature that counted. Check it
    /// anywhere with `steward-verify audit --signers allowed_signers audit.jsonl`.
    Export {
        /// Start at this entry (its sequence number); the whole chain by default.
        #[arg(long, default_value_t = 0)]
        since: u64,
        /// Read a stopped agent's journal directory instead of asking the running agent (a
        /// running agent holds the journal's lock: ask it through its socket).
        #[arg(long)]
        journal: Option<PathBuf>,
        /// The agent's local API socket.
        #[arg(long, default_value = crate::config::DEFAULT_SOCKET)]
        socket: PathBuf,
    },
}

/// How logs are written.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    /// Text for a terminal or the journal.
    Text,
    /// One JSON object per line.
    Json,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the daemon: load and check the configuration, open the journal, load the trust
    /// store, recover every operation a crash left in flight, then reconcile until SIGTERM.
    Run {
        /// The configuration file.
        #[arg(long, default_value = "/etc/steward/agent.toml")]
        config: PathBuf,
    },
    /// Check the configuration and print every error with file, line and key (exit 0 when it
    /// is good, 2 when not).
    CheckConfig {
        /// The configuration file.
        #[arg(long, default_value = "/etc/steward/agent.toml")]
        config: PathBuf,
    },
    /// What the running agent is doing: last pass, guests managed/converged/drifting, ops in
    /// flight and held, guests parked and why.
    Status {
        /// The agent's local API socket.
        #[arg(long, default_value = crate::config::DEFAULT_SOCKET)]
        socket: PathBuf,
    },
    /// Ops held for a signature, with what each would destroy.
    Pending {
        /// The agent's local API socket.
        #[arg(long, default_value = crate::config::DEFAULT_SOCKET, global = true)]
        socket: PathBuf,
        /// `show ID --template`: print the exact bytes to sign for held op ID.
        #[command(subcommand)]
        show: Option<PendingShow>,
    },
    /// Hand a signed op to the running agent (`ssh-keygen -Y sign -n op@steward -f KEY op.json`
    /// writes op.json.sig) and print the gate's decision with each signature's verdict. Under
    /// an m-of-n policy give several operators' signatures at once, or submit them one by one:
    /// a held op keeps its approvals (`partly_approved`) until enough distinct keys signed.
    Submit {
        /// The op, exactly as signed.
        op: PathBuf,
        /// Its armored signatures (one or more, up to 8, all over the same op.json).
        #[arg(required = true, num_args = 1..=8)]
        sig: Vec<PathBuf>,
        /// The agent's local API socket.
        #[arg(long, default_value = crate::config::DEFAULT_SOCKET)]
        socket: PathBuf,
    },
    /// One op from the agent's journal, by id (as `pending` and `submit` name it): its
    /// action, signer and every state it went through, as JSON.
    Op {
        /// The op's id.
        id: u64,
        /// The agent's local API socket.
        #[arg(long, default_value = crate::config::DEFAULT_SOCKET)]
        socket: PathBuf,
    },
    /// The audit chain, for an auditor: `audit export > audit.jsonl`.
    Audit {
        /// What to do with it.
        #[command(subcommand)]
        what: AuditCmd,
    },
    /// Ask the running agent for a pass now.
    Reconcile {
        /// The agent's local API socket.
        #[arg(long, default_value = crate::config::DEFAULT_SOCKET)]
        socket: PathBuf,
    },
    /// Dry run: what the next pass would do to each guest the document names, and why — each
    /// field with the node's value and the document's, destructive actions marked with the
    /// volumes they would remove. Reads the node with the everyday token, straight from
    /// Proxmox (the agent need not run); never writes. Exit 0: no changes; 2: changes; 1: error.
    Plan {
        /// The configuration file (for the node, its endpoint and the everyday token).
        #[arg(long, default_value = "/etc/steward/agent.toml")]
        config: PathBuf,
        /// The document to plan (default: what the configured source serves now — the file,
        /// or the hub's document for this node).
        #[arg(long)]
        desired: Option<PathBuf>,
        /// Print the plan as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write the desired-state document that describes the node as it is (every managed field
    /// in its normal form), to adopt an existing node: export, edit, serve it back; `plan`
    /// against the export says "No changes". What a document cannot say is left out and named
    /// on stderr. Reads with the everyday token; never writes.
    Export {
        /// The configuration file.
        #[arg(long, default_value = "/etc/steward/agent.toml")]
        config: PathBuf,
        /// Only these guests (repeat the flag).
        #[arg(long = "guest")]
        guests: Vec<u32>,
        /// toml or json.
        #[arg(long, value_enum, default_value_t = crate::dry::Format::Toml)]
        format: crate::dry::Format,
    },
    /// Print the `pveum` commands that create the agent's two least-privilege API tokens.
    SetupToken {
        /// The Proxmox user the tokens belong to.
        #[arg(long, default_value = "steward@pve")]
        user: String,
    },
    /// Write man pages and shell completions into DIR (for packagers).
    #[command(hide = true)]
    Generate {
        /// Where to write them.
        dir: PathBuf,
    },
}

//! `strata zoo list | show`.

use anyhow::Result;
use clap::Subcommand;
use serde_json::json;
use transformer::accounting::{forward_flops, params};
use transformer::zoo::{resolve_model, Zoo, ZooEntry};

#[derive(Subcommand, Debug)]
pub enum ZooCommand {
    /// List every model of the zoo.
    List {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one model: its parameters, FLOPs and full configuration.
    Show {
        /// The model's zoo name (e.g. s-lowrank-r192), or a model file (.json, or .toml with
        /// the config's fields at top level).
        name: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(command: ZooCommand) -> Result<()> {
    let zoo = Zoo::builtin()?;
    match command {
        ZooCommand::List { json } => list(&zoo, json),
        ZooCommand::Show { name, json } => show(&resolve_model(&zoo, &name)?, json),
    }
}

fn list(zoo: &Zoo, json: bool) -> Result<()> {
    if json {
        let items: Vec<_> = zoo
            .entries()
            .iter()
            .map(|e| {
                json!({
                    "name": e.name,
                    "description": e.description,
                    "params": { "total": params(&e.config).total },
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&items)?);
        return Ok(());
    }
    println!("{:<24} {:>10}  description", "name", "params");
    for e in zoo.entries() {
        let total = params(&e.config).total as f64;
        println!("{:<24} {:>9.1}M  {}", e.name, total / 1e6, e.description);
    }
    Ok(())
}

/// The JSON object of `strata zoo show --json`.
pub fn describe(entry: &ZooEntry) -> serde_json::Value {
    let c = &entry.config;
    let p = params(c);
    let f = forward_flops(c, c.max_seq_len, false, false);
    let causal = forward_flops(c, c.max_seq_len, true, false);
    // While self-guided training mixes the guides in, each structured layer also runs its
    // dense guide.
    let mut guided = c.clone();
    guided.self_guided = true;
    let guided = forward_flops(&guided, c.max_seq_len, false, true);
    json!({
        "name": entry.name,
        "description": entry.description,
        "file": entry.file,
        "params": p,
        "flops": {
            "seq_len": c.max_seq_len,
            "forward_per_token": f.forward_per_token,
            "forward_per_token_causal": causal.forward_per_token,
            "training_per_token": 3 * f.forward_per_token,
            "forward_per_token_guided": guided.forward_per_token,
            "breakdown": f,
        },
        "config": c,
    })
}

fn show(entry: &ZooEntry, json: bool) -> Result<()> {
    let d = describe(entry);
    if json {
        println!("{}", serde_json::to_string_pretty(&d)?);
        return Ok(());
    }
    let c = &entry.config;
    let p = params(c);
    println!("{} — {}", entry.name, entry.description);
    println!(
        "  d_model {}, d_attn {}, d_ff {}, {} layers, {} heads ({} kv), context {}, vocab {}",
        c.d_model,
        c.d_attn,
        c.d_ff,
        c.n_layers,
        c.n_heads,
        c.n_kv_heads,
        c.max_seq_len,
        c.vocab_size
    );
    println!(
        "  ffn: fc1 {:?}, fc2 {:?}, dense first layer {}",
        c.ffn.fc1, c.ffn.fc2, c.ffn.dense_first_layer
    );
    println!(
        "  attention: q {:?}, k {:?}, v {:?}, o {:?}",
        c.attention.q, c.attention.k, c.attention.v, c.attention.o
    );
    println!(
        "  params: total {}, embedding {}, head {}, attention weights {}, ffn weights {}, norms {}, biases {}",
        p.total, p.embedding, p.head, p.attention_weights, p.ffn_weights, p.norms, p.biases
    );
    println!(
        "  forward FLOPs per token at context {}: {}",
        c.max_seq_len, d["flops"]["forward_per_token"]
    );
    Ok(())
}

//! `strata import hf`, `strata convert` and `strata export hf`: flags -> [`interop`], on the CPU
//! (the work is host-side: reading, SVDs, writing), reports as text or JSON.

use std::path::PathBuf;

use anyhow::{bail, Result};
use burn::backend::Flex;
use clap::{Args, Subcommand, ValueEnum};
use interop::{ConvertSpec, ExportOptions, ImportOptions, Kind, Size, WeightType};

#[derive(Subcommand, Debug)]
pub enum ImportCommand {
    /// A Hugging Face checkpoint (GPT-2, Llama, Qwen2; safetensors, one file or shards; f32,
    /// bf16 or f16) and its tokenizer.json, as a strata checkpoint folder.
    Hf(ImportArgs),
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The Hugging Face model folder (config.json, model*.safetensors, tokenizer.json).
    #[arg(long)]
    from: PathBuf,
    /// The strata checkpoint folder to write.
    #[arg(long)]
    out: PathBuf,
    /// Context length of the strata model (default: the checkpoint's).
    #[arg(long)]
    max_seq_len: Option<usize>,
    /// Replace a folder already at --out.
    #[arg(long)]
    force: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand, Debug)]
pub enum ExportCommand {
    /// A strata checkpoint, structured layers merged, as a Hugging Face model folder.
    Hf(ExportArgs),
}

/// `--dtype` of exported weights.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DtypeArg {
    F32,
    Bf16,
    F16,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// A checkpoint folder, or a run folder (its newest checkpoint).
    #[arg(long)]
    checkpoint: PathBuf,
    /// The Hugging Face model folder to write.
    #[arg(long)]
    out: PathBuf,
    /// Element type of the written weights.
    #[arg(long, value_enum, default_value = "f32")]
    dtype: DtypeArg,
    /// Replace a folder already at --out.
    #[arg(long)]
    force: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// `--ffn` / `--attention`: the structure a conversion puts in place.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum KindArg {
    Lowrank,
    Blockdense,
    Blockshuffle,
}

impl From<KindArg> for Kind {
    fn from(k: KindArg) -> Self {
        match k {
            KindArg::Lowrank => Kind::LowRank,
            KindArg::Blockdense => Kind::BlockDense,
            KindArg::Blockshuffle => Kind::BlockShuffle,
        }
    }
}

#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// The checkpoint to convert (a checkpoint folder, or a run folder: its newest).
    #[arg(long)]
    checkpoint: PathBuf,
    /// The checkpoint folder to write.
    #[arg(long)]
    out: PathBuf,
    /// Structure of the FFN matrices.
    #[arg(long, value_enum)]
    ffn: Option<KindArg>,
    /// Structure of the attention projections q, k, v, o (LPA).
    #[arg(long, value_enum)]
    attention: Option<KindArg>,
    /// One inner rank for every converted matrix (lowrank, blockdense).
    #[arg(long, conflicts_with_all = ["params_ratio", "energy"])]
    rank: Option<usize>,
    /// Each converted matrix gets at most this fraction of its dense parameters, as many as
    /// that allows.
    #[arg(long, conflicts_with = "energy")]
    params_ratio: Option<f64>,
    /// Each matrix gets the smallest rank that keeps this fraction of its squared singular
    /// values (lowrank, blockdense).
    #[arg(long)]
    energy: Option<f64>,
    /// Blocks of blockdense / blockshuffle.
    #[arg(long, default_value_t = 4)]
    blocks: usize,
    /// Keep block 0 dense.
    #[arg(long)]
    keep_first_dense: bool,
    /// Keep each pretrained matrix as its structured layer's guide (alpha = 1: the converted
    /// model computes the pretrained one), to heal with `strata train --init OUT --sgt ...`.
    #[arg(long)]
    self_guided: bool,
    /// Replace a folder already at --out.
    #[arg(long)]
    force: bool,
    /// Print one JSON line per converted matrix, then a summary line.
    #[arg(long)]
    json: bool,
}

pub fn import(command: ImportCommand) -> Result<()> {
    let ImportCommand::Hf(a) = command;
    let options = ImportOptions {
        max_seq_len: a.max_seq_len,
        force: a.force,
    };
    let report = interop::import_hf::<Flex>(&a.from, &a.out, &options, &Default::default())?;
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "imported {} ({}: {:.2}M params, {} tensors) into {}",
            a.from.display(),
            report.family,
            report.params as f64 / 1e6,
            report.tensors,
            report.out.display()
        );
    }
    Ok(())
}

pub fn export(command: ExportCommand) -> Result<()> {
    let ExportCommand::Hf(a) = command;
    let options = ExportOptions {
        dtype: match a.dtype {
            DtypeArg::F32 => WeightType::F32,
            DtypeArg::Bf16 => WeightType::Bf16,
            DtypeArg::F16 => WeightType::F16,
        },
        force: a.force,
    };
    let report = interop::export_hf::<Flex>(&a.checkpoint, &a.out, &options, &Default::default())?;
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "exported {} as a {} model ({:.2}M params, {} structured layers merged) into {}",
            a.checkpoint.display(),
            report.family,
            report.params as f64 / 1e6,
            report.merged_layers,
            report.out.display()
        );
    }
    Ok(())
}

pub fn convert(a: ConvertArgs) -> Result<()> {
    let size = match (a.rank, a.params_ratio, a.energy) {
        (Some(r), None, None) => Size::Rank(r),
        (None, Some(x), None) => Size::ParamsRatio(x),
        (None, None, Some(e)) => Size::Energy(e),
        (None, None, None) => Size::Unsized,
        _ => bail!("give one size: --rank R, --params-ratio X or --energy E"),
    };
    let spec = ConvertSpec {
        ffn: a.ffn.map(Kind::from),
        attention: a.attention.map(Kind::from),
        size,
        blocks: a.blocks,
        keep_first_dense: a.keep_first_dense,
        self_guided: a.self_guided,
        force: a.force,
    };
    let report = interop::convert::<Flex>(&a.checkpoint, &a.out, &spec, &Default::default())?;
    if a.json {
        for l in &report.layers {
            println!("{}", serde_json::to_string(l)?);
        }
        println!(
            "{}",
            serde_json::json!({
                "params_before": report.params_before,
                "params_after": report.params_after,
                "layers": report.layers.len(),
                "out": report.out,
            })
        );
    } else {
        for l in &report.layers {
            println!(
                "blocks.{}.{}: {} rank {} | {} of {} params | relative error {:.4}",
                l.layer,
                l.place,
                l.structure.name(),
                l.rank.map_or("-".into(), |r| r.to_string()),
                l.params,
                l.dense_params,
                l.rel_error
            );
        }
        println!(
            "converted {} matrices: {:.3}M -> {:.3}M params{} into {}",
            report.layers.len(),
            report.params_before as f64 / 1e6,
            report.params_after as f64 / 1e6,
            if a.self_guided {
                " (guides kept: alpha = 1 computes the original)"
            } else {
                ""
            },
            report.out.display()
        );
    }
    Ok(())
}

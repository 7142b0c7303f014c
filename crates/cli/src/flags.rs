//! Library errors name the setting (`batch_size`, in backticks); the command line names the flag
//! that sets it. One table from the one to the other, applied to every message the CLI prints.

/// A setting as the libraries write it in their messages, and the flag that sets it.
pub const FLAGS: &[(&str, &str)] = &[
    ("`attention`", "--attention"),
    ("`backend`", "--backend"),
    ("`batch_size`", "--batch-size"),
    ("`cluster.data_port`", "--node-port"),
    ("`cluster.host`", "--node-host"),
    ("`cluster.rank`", "--node-rank"),
    ("`cluster.timeout`", "--node-timeout"),
    ("`data`", "--data"),
    ("`devices`", "--devices"),
    ("`blocks`", "--blocks"),
    ("`eot`", "--eot"),
    ("`ffn`", "--ffn"),
    ("`force`", "--force"),
    ("`global_batch`", "--global-batch"),
    // `init` alone also names a layer's initialisation in model config errors.
    ("`init` checkpoint", "--init checkpoint"),
    ("`max_seq_len`", "--max-seq-len"),
    ("`nodes`", "--nodes"),
    ("`resume`", "--resume"),
    ("`seq_len`", "--seq-len"),
    ("`size.energy`", "--energy"),
    ("`size.params_ratio`", "--params-ratio"),
    ("`size.rank`", "--rank"),
    ("`skip_nonfinite`", "--skip-nonfinite"),
    ("`val_every`", "--val-every"),
    ("`vocab_size`", "--vocab-size"),
];

/// `message` with each setting replaced by its flag.
pub fn name_flags(message: &str) -> String {
    FLAGS
        .iter()
        .fold(message.to_string(), |text, (setting, flag)| {
            text.replace(setting, flag)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_become_flags_and_other_names_stay() {
        assert_eq!(
            name_flags("lower `batch_size` or `seq_len`; pass `cluster.rank` 2"),
            "lower --batch-size or --seq-len; pass --node-rank 2"
        );
        assert_eq!(
            name_flags("`init` = normal does not apply; the `init` checkpoint"),
            "`init` = normal does not apply; the --init checkpoint"
        );
    }

    #[test]
    fn every_flag_of_the_table_is_a_flag_of_strata() {
        use clap::CommandFactory;
        let cli = crate::Cli::command();
        let mut known = Vec::new();
        for sub in cli.get_subcommands() {
            for leaf in std::iter::once(sub).chain(sub.get_subcommands()) {
                known.extend(leaf.get_arguments().filter_map(|a| a.get_long()));
            }
        }
        for (_, flag) in FLAGS {
            let name = flag.split(' ').next().unwrap().trim_start_matches("--");
            assert!(known.contains(&name), "{flag} is no flag of strata");
        }
    }
}

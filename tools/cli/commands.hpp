// The subcommands of build/dssm. Each lives in its own file and adds itself to the app.
#pragma once

#include <CLI/CLI.hpp>

namespace dssm::cli {

void add_gradcheck_command(CLI::App& app);
void add_data_command(CLI::App& app);
void add_tokenizer_command(CLI::App& app);
void add_train_command(CLI::App& app);
void add_eval_command(CLI::App& app);
void add_params_command(CLI::App& app);
void add_init_command(CLI::App& app);
void add_generate_command(CLI::App& app);

}  // namespace dssm::cli

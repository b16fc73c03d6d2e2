// build/dssm — the command-line entry point of densessm. Run `dssm --help` for the commands.
#include <fmt/format.h>

#include <exception>

#include "tensor/error.hpp"
#include "tools/cli/commands.hpp"

int main(int argc, char** argv) {
  CLI::App app{"densessm: DenseSSM language models (DenseRetNet, DenseMamba) from scratch"};
  app.require_subcommand(1);
  dssm::cli::add_gradcheck_command(app);
  dssm::cli::add_data_command(app);
  dssm::cli::add_tokenizer_command(app);
  dssm::cli::add_train_command(app);
  dssm::cli::add_eval_command(app);
  dssm::cli::add_params_command(app);
  dssm::cli::add_init_command(app);
  dssm::cli::add_generate_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const dssm::Error& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  }
  return 0;
}

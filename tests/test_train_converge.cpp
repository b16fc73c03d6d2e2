// A tiny DenseRetNet and a tiny DenseMamba, trained for a few seconds on the in-repo corpus
// (byte-level tokens), predict held-out text clearly better than the corpus' unigram entropy:
// they learned more than token frequencies.
#include <catch2/catch.hpp>

#include "test_train_helpers.hpp"
#include "train/trainer.hpp"

using namespace dssm;
using namespace dssm::train;

TEST_CASE("tiny DenseRetNet and DenseMamba learn below the unigram entropy", "[train]") {
  test::TrainScratch dir;
  const std::string shard = test::write_corpus_shard(dir / "corpus.tok");
  const double entropy = test::unigram_entropy(test::corpus_documents());
  for (const auto& model : {test::tiny_densretnet(), test::tiny_densemamba()}) {
    INFO(model["arch"]);
    nlohmann::json train_section = test::tiny_train(50);
    train_section["seq_len"] = 64;
    train_section["lr"] = 1e-2;
    train_section["end_lr"] = 1e-3;
    train_section["micro_batch_size"] = 8;
    train_section["seed"] = std::random_device{}() % 1000;
    TrainOptions o;
    o.config = {{"model", model}, {"train", train_section}};
    o.data = {shard};
    o.out_dir = dir / model["arch"].get<std::string>();
    o.quiet = true;
    const TrainSummary s = train::train(o);
    UNSCOPED_INFO("unigram entropy " << entropy << ", first loss " << s.losses.front()
                                     << ", last loss " << s.losses.back() << ", validation loss "
                                     << s.val_loss);
    CHECK(s.losses.front() > entropy);
    CHECK(s.val_loss < entropy - 0.3);
  }
}

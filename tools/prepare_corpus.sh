#!/usr/bin/env bash
# The default corpus, from nothing to token shards, with no download but Debian's own packages:
#   1. fetch linux-doc-6.1 (the Linux kernel's Documentation/, GPL-2.0) with apt-get, unless
#      it is installed already;
#   2. strip its reStructuredText / plain-text files to prose, one JSON line per file, in
#      data/linux-doc/corpus.jsonl (about 21 MB of English; translations and devicetree
#      bindings left out);
#   3. train a sentencepiece BPE tokenizer on it (vocabulary 8192 by default: about 15 s on 2
#      cores; the paper uses LLaMA's 32000) -> data/linux-doc/tokenizer.model;
#   4. tokenize it into Megatron shards -> data/linux-doc/shards/ (the sampler holds out the
#      last 1% of the documents as the validation split).
# Every step is skipped when its output exists, so running it again is free.
#
# usage: tools/prepare_corpus.sh            (from the repository root, after the build)
# environment: DSSM (default build/dssm), DSSM_CORPUS_DIR (default data/linux-doc),
#              DSSM_VOCAB (default 8192)
set -euo pipefail

DSSM=${DSSM:-build/dssm}
OUT=${DSSM_CORPUS_DIR:-data/linux-doc}
VOCAB=${DSSM_VOCAB:-8192}
PACKAGE=linux-doc-6.1
INSTALLED=/usr/share/doc/$PACKAGE/Documentation

say() { printf '\033[1m[corpus]\033[0m %s\n' "$*" >&2; }
[ -x "$DSSM" ] || { say "no $DSSM: build first (cmake --build build)"; exit 1; }
mkdir -p "$OUT"

# 1. The package: the installed copy, else the .deb unpacked under $OUT/package (no root needed
#    when apt's lists are present; as root on a fresh machine, `apt-get update` runs first).
documentation=$INSTALLED
if [ ! -d "$documentation" ]; then
  documentation=$OUT/package/usr/share/doc/$PACKAGE/Documentation
  if [ ! -d "$documentation" ]; then
    say "fetching $PACKAGE (37 MB) with apt-get"
    mkdir -p "$OUT/package"
    if ! (cd "$OUT/package" && apt-get download "$PACKAGE" >/dev/null 2>&1); then
      [ "$(id -u)" = 0 ] || { say "apt-get download failed: run as root or apt-get update"; exit 1; }
      DEBIAN_FRONTEND=noninteractive apt-get update -qq
      (cd "$OUT/package" && apt-get download "$PACKAGE")
    fi
    dpkg -x "$OUT"/package/"$PACKAGE"_*.deb "$OUT/package"
    rm -f "$OUT"/package/"$PACKAGE"_*.deb
  fi
fi

# 2. Markup stripped, one document per file: {"text": "...", "meta": {"pile_set_name": "linux-doc"}}
# Dropped lines: directives and comments (".. x::"), section underlines (=====), table borders,
# SPDX tags, lone ":field:" lines. Inline roles keep their words (":ref:`text <label>`" -> text).
strip_markup='
/^\.\. / || /^[ \t]*:[A-Za-z_-]+:[ \t]*$/ || /SPDX-License-Identifier/ { next }
/^[ \t]*[-=~^"`#*+_.:][-=~^"`#*+_.:][-=~^"`#*+_.:]+[ \t]*$/ { next }
/^[ \t]*\+[-=+]+\+[ \t]*$/ { next }
{
  line = $0
  gsub(/:[a-z:]+:`/, "`", line); gsub(/ <[^<>`]*>`/, "`", line)
  gsub(/``?/, "", line); gsub(/\*\*/, "", line)
  if (line ~ /^[ \t]*$/) { if (printed && !blank) { print ""; blank = 1 }; next }
  print line; printed = 1; blank = 0
}'
to_json_line='
{ text = text $0 "\\n" }
END { if (length(text) > 200) printf "{\"text\": \"%s\", \"meta\": {\"pile_set_name\": \"linux-doc\"}}\n", text }'
if [ ! -s "$OUT/corpus.jsonl" ]; then
  say "stripping markup from $documentation"
  files=$(cd "$documentation" && find . \( -path ./translations -o -path ./devicetree \) -prune \
            -o \( -name '*.rst.gz' -o -name '*.txt.gz' \) -print | LC_ALL=C sort)
  total=$(printf '%s\n' "$files" | wc -l)
  done_count=0
  while read -r file; do
    zcat "$documentation/$file" | LC_ALL=C tr -d '\000-\010\013\014\016-\037' |
      awk "$strip_markup" | sed 's/\\/\\\\/g; s/"/\\"/g; s/\t/\\t/g; s/\r//g' | awk "$to_json_line"
    done_count=$((done_count + 1))
    if [ $((done_count % 250)) = 0 ] || [ "$done_count" = "$total" ]; then
      printf '\r[corpus] %d / %d files' "$done_count" "$total" >&2
    fi
  done <<< "$files" > "$OUT/corpus.jsonl.tmp"
  printf '\n' >&2
  mv "$OUT/corpus.jsonl.tmp" "$OUT/corpus.jsonl"
fi
say "corpus: $(wc -l < "$OUT/corpus.jsonl") documents, $(( $(wc -c < "$OUT/corpus.jsonl") / 1000000 )) MB of JSON lines"

# 3. The tokenizer, trained once.
if [ ! -s "$OUT/tokenizer.model" ]; then
  "$DSSM" tokenizer train --input "$OUT/corpus.jsonl" --vocab-size "$VOCAB" --model-type bpe \
    --out "$OUT/tokenizer"
fi

# 4. The shards; summary.json marks a finished preparation.
if [ ! -s "$OUT/shards/summary.json" ]; then
  "$DSSM" data prepare --input "$OUT/corpus.jsonl" --tokenizer "$OUT/tokenizer.model" \
    --out "$OUT/shards" --format megatron --overwrite
fi
"$DSSM" data info "$OUT/shards"
say "ready: $OUT/shards (tokenizer $OUT/tokenizer.model)"

#include "nn/safetensors.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "tensor/error.hpp"

namespace dssm::nn {

static_assert(std::endian::native == std::endian::little,
              "safetensors stores little-endian bytes; this reader copies them as they are");

namespace {

using nlohmann::json;

// A header larger than this is treated as corrupt (the reference reader's limit).
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

std::string where_of(const std::string& path) {
  return fmt::format("safetensors '{}'", path);
}

// ---- writing ----------------------------------------------------------------------------------

void write_all(int fd, const void* data, size_t nbytes, const std::string& path) {
  const char* bytes = static_cast<const char*>(data);
  while (nbytes > 0) {
    const ssize_t written = ::write(fd, bytes, nbytes);
    if (written < 0 && errno == EINTR) continue;
    DSSM_CHECK(written > 0, where_of(path), "write failed: {}", std::strerror(errno));
    bytes += written;
    nbytes -= static_cast<size_t>(written);
  }
}

// Makes the rename itself durable.
void fsync_directory_of(const std::string& path) {
  const auto dir = std::filesystem::absolute(path).parent_path();
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return;  // not fatal: the data is already on disk
  ::fsync(fd);
  ::close(fd);
}

// ---- reading ----------------------------------------------------------------------------------

struct Entry {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin, end;
};

uint64_t read_u64(const json& value, const std::string& where, const std::string& field) {
  DSSM_CHECK(value.is_number_unsigned(), where,
             "field '{}' must hold non-negative integers, got {}", field, value.dump());
  return value.get<uint64_t>();
}

Entry parse_entry(const std::string& name, const json& info, const std::string& file_where) {
  const std::string where = fmt::format("{}, tensor '{}'", file_where, name);
  DSSM_CHECK(info.is_object(), where, "expected an object with dtype, shape, data_offsets, got {}",
             info.dump());
  for (const char* field : {"dtype", "shape", "data_offsets"}) {
    DSSM_CHECK(info.contains(field), where, "missing field '{}'", field);
  }
  DSSM_CHECK(info["dtype"].is_string(), where, "field 'dtype' must be a string, got {}",
             info["dtype"].dump());
  Entry e{name, safetensors_dtype(info["dtype"].get<std::string>(), where), {}, 0, 0};

  const json& shape = info["shape"];
  DSSM_CHECK(shape.is_array(), where, "field 'shape' must be an array, got {}", shape.dump());
  uint64_t numel = 1;
  for (const json& d : shape) {
    const uint64_t size = read_u64(d, where, "shape");
    DSSM_CHECK(!__builtin_mul_overflow(numel, size, &numel) && numel < (uint64_t{1} << 62), where,
               "shape {} has too many elements", shape.dump());
    e.shape.push_back(static_cast<int64_t>(size));
  }

  const json& offsets = info["data_offsets"];
  DSSM_CHECK(offsets.is_array() && offsets.size() == 2, where,
             "field 'data_offsets' must be [begin, end], got {}", offsets.dump());
  e.begin = read_u64(offsets[0], where, "data_offsets");
  e.end = read_u64(offsets[1], where, "data_offsets");
  DSSM_CHECK(e.begin <= e.end, where, "data_offsets [{}, {}) end before they begin", e.begin,
             e.end);
  const uint64_t expected = numel * dtype_size(e.dtype);
  DSSM_CHECK(e.end - e.begin == expected, where,
             "data_offsets [{}, {}) hold {} bytes, but shape {} of {} needs {} bytes", e.begin,
             e.end, e.end - e.begin, shape.dump(), info["dtype"].get<std::string>(), expected);
  return e;
}

// The tensors must tile [0, data_bytes) exactly, in offset order.
void check_layout(std::vector<Entry>& entries, uint64_t data_bytes, const std::string& where) {
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t position = 0;
  const Entry* previous = nullptr;
  for (const Entry& e : entries) {
    DSSM_CHECK(e.end <= data_bytes, where,
               "tensor '{}': data_offsets [{}, {}) run past the data section of {} bytes", e.name,
               e.begin, e.end, data_bytes);
    DSSM_CHECK(e.begin >= position, where,
               "tensor '{}': data_offsets [{}, {}) overlap tensor '{}' at [{}, {})", e.name,
               e.begin, e.end, previous ? previous->name : "", previous ? previous->begin : 0,
               position);
    DSSM_CHECK(
        e.begin == position, where,
        "tensor '{}': data_offsets begin at {}, leaving a gap after byte {} of the data section",
        e.name, e.begin, position);
    position = e.end;
    previous = &e;
  }
  DSSM_CHECK(position == data_bytes, where,
             "the data section has {} bytes but its tensors end at byte {} (trailing bytes)",
             data_bytes, position);
}

}  // namespace

std::string safetensors_dtype_name(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return "F32";
    case DType::f64:
      return "F64";
    case DType::bf16:
      return "BF16";
    case DType::i32:
      return "I32";
    case DType::i64:
      return "I64";
  }
  fail("safetensors", "unknown dtype code {}", static_cast<int>(dtype));
}

DType safetensors_dtype(const std::string& name, const std::string& where) {
  for (DType t : {DType::f32, DType::f64, DType::bf16, DType::i32, DType::i64}) {
    if (name == safetensors_dtype_name(t)) return t;
  }
  fail(where, "unknown dtype '{}' (supported: F32, F64, BF16, I32, I64)", name);
}

void save_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  const std::string where = where_of(path);
  std::vector<Tensor> host;  // contiguous CPU copies, in name order
  json header = json::object();
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    DSSM_CHECK(name != "__metadata__" && !name.empty(), where, "invalid tensor name '{}'", name);
    DSSM_CHECK(tensor.defined(), where, "tensor '{}' is undefined", name);
    const Tensor t = tensor.detach().to(Device::cpu()).contiguous();
    header[name] = {{"dtype", safetensors_dtype_name(t.dtype())},
                    {"shape", t.shape()},
                    {"data_offsets", {offset, offset + t.nbytes()}}};
    offset += t.nbytes();
    host.push_back(t);
  }
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  const uint64_t header_bytes = text.size();

  const std::string temp = path + ".tmp";
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  DSSM_CHECK(fd >= 0, where, "cannot create '{}': {}", temp, std::strerror(errno));
  try {
    write_all(fd, &header_bytes, sizeof header_bytes, path);
    write_all(fd, text.data(), text.size(), path);
    for (const Tensor& t : host) write_all(fd, t.raw_data(), t.nbytes(), path);
    DSSM_CHECK(::fsync(fd) == 0, where, "fsync failed: {}", std::strerror(errno));
  } catch (...) {
    ::close(fd);
    ::unlink(temp.c_str());
    throw;
  }
  ::close(fd);
  if (std::rename(temp.c_str(), path.c_str()) != 0) {
    const std::string reason = std::strerror(errno);
    ::unlink(temp.c_str());
    fail(where, "cannot rename '{}' to it: {}", temp, reason);
  }
  fsync_directory_of(path);
}

SafetensorsContents load_safetensors(const std::string& path) {
  const std::string where = where_of(path);
  std::error_code ec;
  const uint64_t file_bytes = std::filesystem::file_size(path, ec);
  DSSM_CHECK(!ec, where, "cannot open: {}", ec.message());
  std::ifstream in(path, std::ios::binary);
  DSSM_CHECK(in.good(), where, "cannot open for reading");

  DSSM_CHECK(file_bytes >= 8, where, "file has {} bytes, fewer than the 8 of the header length",
             file_bytes);
  uint64_t header_bytes = 0;
  in.read(reinterpret_cast<char*>(&header_bytes), sizeof header_bytes);
  DSSM_CHECK(header_bytes <= file_bytes - 8, where,
             "header length {} runs past the end of the file ({} bytes after the length field)",
             header_bytes, file_bytes - 8);
  DSSM_CHECK(header_bytes <= kMaxHeaderBytes, where,
             "header length {} exceeds the limit of {} bytes", header_bytes, kMaxHeaderBytes);
  std::string text(header_bytes, '\0');
  in.read(text.data(), static_cast<std::streamsize>(header_bytes));
  DSSM_CHECK(in.good(), where, "read of the {}-byte header failed", header_bytes);

  json header;
  try {
    header = json::parse(text);
  } catch (const json::parse_error& e) {
    fail(where, "malformed JSON header: {}", e.what());
  }
  DSSM_CHECK(header.is_object(), where, "the header must be a JSON object, got {}",
             header.type_name());

  SafetensorsContents out;
  std::vector<Entry> entries;
  for (const auto& [name, info] : header.items()) {
    if (name == "__metadata__") {
      DSSM_CHECK(info.is_object(), where, "__metadata__ must be an object of strings");
      for (const auto& [key, value] : info.items()) {
        DSSM_CHECK(value.is_string(), where, "__metadata__ '{}' must be a string, got {}", key,
                   value.dump());
        out.metadata[key] = value.get<std::string>();
      }
      continue;
    }
    entries.push_back(parse_entry(name, info, where));
  }
  const uint64_t data_start = 8 + header_bytes;
  check_layout(entries, file_bytes - data_start, where);

  for (const Entry& e : entries) {
    const Tensor t = Tensor::empty(e.shape, e.dtype);
    in.seekg(static_cast<std::streamoff>(data_start + e.begin));
    in.read(static_cast<char*>(t.raw_data()), static_cast<std::streamsize>(e.end - e.begin));
    DSSM_CHECK(in.good(), where, "tensor '{}': read of {} bytes at offset {} failed", e.name,
               e.end - e.begin, data_start + e.begin);
    out.tensors.emplace(e.name, t);
  }
  return out;
}

}  // namespace dssm::nn

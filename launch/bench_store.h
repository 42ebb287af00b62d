// bench_store.h: the NVMe shard store's part of `zerotrain bench io`.
#pragma once
#include <filesystem>

#include "model/params.h"

namespace zt {

// Writes every unit's parameters and both moments (fp32) through a ShardStore under `dir` in
// the optimizer step's tiles, 4 in flight, then makes them durable; evicts the file from the page
// cache and reads everything back (checksums verified). Prints store_write and store_read lines
// (best of `repeat`) and, on stderr, their ratio to the raw rates measured in the same run.
void bench_store(const std::filesystem::path& dir, const ParamTable& table, int repeat,
                 double raw_write_gbs, double raw_read_gbs);

}  // namespace zt

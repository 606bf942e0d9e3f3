// qwen3core_cpu::rehome_huge_pages(Tensor t) -> bool: moves the memory under t's storage (and so
// under every view of it) into transparent huge pages.
//
// Decode streams every packed weight once per token. With 4 KiB pages each 4 KiB of it is also
// a TLB entry to find, which in a virtual machine is a two-level page walk; where transparent
// huge pages are in ``madvise`` mode a range gets 2 MiB pages only if asked before its first
// touch. torch's allocator asks nothing, and its large blocks start just past glibc's chunk
// header, so even an madvise afterwards leaves a weight's first 2 MiB on small pages and most of
// the 0.6B's 1-3 MiB int4 weights on small pages entirely. Here packed weights are copied into
// chunks of 2 MiB-aligned, madvised memory, several weights per chunk (no rounding of each to
// 2 MiB), and their storages are pointed at the copy: tensor objects, views and shapes stay as
// they are. A chunk is unmapped when the last weight in it is freed. Storages of 64 MiB and more
// are collapsed into huge pages where they are (MADV_COLLAPSE, Linux 6.1), storages under 1 MiB
// are left alone (nothing to gain), as is everything where mmap or madvise is refused. Returns
// whether the memory is now asked to be on huge pages.
#include <ATen/ATen.h>
#include <c10/core/StorageImpl.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <mutex>

#if defined(__linux__)
#include <sys/mman.h>
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25  // Linux 6.1; older kernels refuse it (EINVAL), which is harmless
#endif
#endif

namespace qwen3core_cpu {
namespace {

constexpr size_t kHugePage = size_t{2} << 20;
constexpr size_t kChunkBytes = size_t{64} << 20;
constexpr size_t kMinBytes = size_t{1} << 20;
// From this size a storage stays where it is and its 2 MiB-aligned interior (all but at most
// 4 MiB of it) is collapsed into huge pages in place: no copy of a 0.6-GiB head beside itself.
constexpr size_t kInPlaceBytes = size_t{64} << 20;
constexpr size_t kAlign = 64;  // what torch's CPU allocator gives

size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

struct Chunk {
  char* base;
  size_t size;
  size_t used = 0;
  int64_t live = 0;  // storages pointing into it
  bool open = true;  // still handing out memory
};

std::mutex chunks_mutex;
Chunk* open_chunk = nullptr;

#if defined(__linux__)
void unmap(Chunk* chunk) {
  munmap(chunk->base, chunk->size);
  delete chunk;
}

// One rehomed storage's place in its chunk: the DataPtr's context.
struct Slice {
  Chunk* chunk;
  char* data;
  size_t bytes;
};

// The DataPtr deleter of every rehomed storage. A chunk outlived by its neighbours would keep
// the slice's pages resident (a server loading one model after another): they are handed back
// to the system at once, all whole pages of it.
void release(void* context) {
  auto* slice = static_cast<Slice*>(context);
  {
    // Under the lock: another release could otherwise unmap the chunk (and the system reuse
    // its addresses) between the count and the madvise.
    std::lock_guard<std::mutex> lock(chunks_mutex);
    Chunk* chunk = slice->chunk;
    if (--chunk->live == 0 && !chunk->open) {
      unmap(chunk);
    } else {
      const size_t page = 4096;
      char* lo = reinterpret_cast<char*>(
          round_up(reinterpret_cast<uintptr_t>(slice->data), page));
      char* hi = reinterpret_cast<char*>(
          reinterpret_cast<uintptr_t>(slice->data + slice->bytes) / page * page);
      if (hi > lo) madvise(lo, hi - lo, MADV_DONTNEED);
    }
  }
  delete slice;
}

// A new chunk of at least ``bytes``, 2 MiB-aligned and madvised; nullptr if refused.
Chunk* new_chunk(size_t bytes) {
  const size_t size = round_up(std::max(bytes, kChunkBytes), kHugePage);
  void* mapped = mmap(nullptr, size + kHugePage, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mapped == MAP_FAILED) return nullptr;
  char* start = static_cast<char*>(mapped);
  char* aligned = reinterpret_cast<char*>(
      round_up(reinterpret_cast<uintptr_t>(start), kHugePage));
  if (aligned > start) munmap(start, aligned - start);
  const size_t tail = (start + size + kHugePage) - (aligned + size);
  if (tail > 0) munmap(aligned + size, tail);
  if (madvise(aligned, size, MADV_HUGEPAGE) != 0) {
    munmap(aligned, size);
    return nullptr;
  }
  return new Chunk{aligned, size};
}

// ``bytes`` from the open chunk (a new one when it is full); nullptr if memory is refused.
void* allocate(size_t bytes, Chunk** owner) {
  bytes = round_up(bytes, kAlign);
  std::lock_guard<std::mutex> lock(chunks_mutex);
  if (open_chunk == nullptr || open_chunk->used + bytes > open_chunk->size) {
    Chunk* fresh = new_chunk(bytes);
    if (fresh == nullptr) return nullptr;
    if (open_chunk != nullptr) {
      open_chunk->open = false;
      if (open_chunk->live == 0) unmap(open_chunk);
    }
    open_chunk = fresh;
  }
  void* at = open_chunk->base + open_chunk->used;
  open_chunk->used += bytes;
  open_chunk->live += 1;
  *owner = open_chunk;
  return at;
}
#endif

bool rehome_huge_pages(const at::Tensor& t) {
  TORCH_CHECK(t.device().is_cpu(), "rehome_huge_pages takes CPU tensors, not ", t.device());
#if defined(__linux__)
  if (!t.has_storage()) return false;
  c10::StorageImpl* storage = t.storage().unsafeGetStorageImpl();
  const size_t bytes = storage->nbytes();
  if (bytes < kMinBytes || storage->data_ptr().get_deleter() == &release) return false;
  if (bytes >= kInPlaceBytes) {
    char* begin = static_cast<char*>(storage->data_ptr().get());
    char* lo = reinterpret_cast<char*>(round_up(reinterpret_cast<uintptr_t>(begin), kHugePage));
    char* hi = reinterpret_cast<char*>(
        reinterpret_cast<uintptr_t>(begin + bytes) / kHugePage * kHugePage);
    if (hi <= lo || madvise(lo, hi - lo, MADV_HUGEPAGE) != 0) return false;
    return madvise(lo, hi - lo, MADV_COLLAPSE) == 0;
  }
  Chunk* owner = nullptr;
  void* fresh = allocate(bytes, &owner);
  if (fresh == nullptr) return false;
  std::memcpy(fresh, storage->data_ptr().get(), bytes);
  auto* slice = new Slice{owner, static_cast<char*>(fresh), bytes};
  // The old memory is freed here, by its own deleter, as the old DataPtr is replaced.
  storage->set_data_ptr_noswap(c10::DataPtr(fresh, slice, &release, t.device()));
  return true;
#else
  return false;
#endif
}

}  // namespace
}  // namespace qwen3core_cpu

TORCH_LIBRARY_FRAGMENT(qwen3core_cpu, m) {
  m.def("rehome_huge_pages(Tensor t) -> bool");
}

TORCH_LIBRARY_IMPL(qwen3core_cpu, CPU, m) {
  m.impl("rehome_huge_pages", &qwen3core_cpu::rehome_huge_pages);
}

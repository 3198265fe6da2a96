// fastloss — run-time ISA detection and the active kernel table.
#include "dispatch.hpp"

#include <atomic>

namespace fastloss {
#ifdef FASTLOSS_HAVE_BASELINE
namespace baseline { const KernelTable& table(); }
#endif
#ifdef FASTLOSS_HAVE_EMU512
namespace emu512 { const KernelTable& table(); }
#endif
#ifdef FASTLOSS_HAVE_AVX2
namespace avx2 { const KernelTable& table(); }
#endif
#ifdef FASTLOSS_HAVE_AVX512
namespace avx512 { const KernelTable& table(); }
#endif

namespace {

struct IsaEntry {
  const char* name;
  const KernelTable& (*table)();
  bool (*supported)();
  bool test_only;  // chosen only by name (FASTLOSS_ISA, _set_isa), never by default
};

#if defined(__x86_64__) || defined(_M_X64)
// __builtin_cpu_supports also checks that the OS saves the wider registers (XGETBV).
[[maybe_unused]] bool cpu_has_avx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
[[maybe_unused]] bool cpu_has_avx512() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("fma");
}
#endif
[[maybe_unused]] bool always() { return true; }

const std::vector<IsaEntry>& entries() {
  static const std::vector<IsaEntry> e = {
#ifdef FASTLOSS_HAVE_BASELINE
      {"baseline", &baseline::table, &always, false},
#endif
#ifdef FASTLOSS_HAVE_EMU512
      {"emu512", &emu512::table, &cpu_has_avx2, true},
#endif
#ifdef FASTLOSS_HAVE_AVX2
      {"avx2", &avx2::table, &cpu_has_avx2, false},
#endif
#ifdef FASTLOSS_HAVE_AVX512
      {"avx512", &avx512::table, &cpu_has_avx512, false},
#endif
  };
  return e;
}

const KernelTable* best_table() {
  const KernelTable* best = nullptr;
  for (const auto& e : entries())
    if (!e.test_only && e.supported()) best = &e.table();
  return best;
}

std::atomic<const KernelTable*>& active_ptr() {
  static std::atomic<const KernelTable*> p{best_table()};
  return p;
}

}  // namespace

std::vector<std::string> compiled_isas() {
  std::vector<std::string> r;
  for (const auto& e : entries()) r.emplace_back(e.name);
  return r;
}

std::vector<std::string> supported_isas() {
  std::vector<std::string> r;
  for (const auto& e : entries())
    if (e.supported()) r.emplace_back(e.name);
  return r;
}

const KernelTable& active_table() { return *active_ptr().load(std::memory_order_acquire); }

const KernelTable* find_table(const std::string& name) {
  for (const auto& e : entries())
    if (name == e.name && e.supported()) return &e.table();
  return nullptr;
}

bool set_active_isa(const std::string& name) {
  const KernelTable* t = find_table(name);
  if (!t) return false;
  active_ptr().store(t, std::memory_order_release);
  return true;
}

}  // namespace fastloss

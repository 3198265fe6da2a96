// fastloss bindings — NumPy array checks (see arrays.hpp).
#include "arrays.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <mutex>
#include <new>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif
#if defined(_WIN32)
#include <malloc.h>
#else
#include <pthread.h>
#endif

namespace fastloss::bind {

namespace {
bool little_endian() {
  const std::uint16_t probe = 1;
  return *reinterpret_cast<const unsigned char*>(&probe) == 1;
}
}  // namespace

py::array as_array(const py::handle& obj, const char* name) {
  py::array a;
  if (py::isinstance<py::array>(obj)) {
    a = py::reinterpret_borrow<py::array>(obj);
  } else {
    if (obj.is_none()) throw py::type_error(std::string(name) + " must be an array, got None");
    try {
      a = py::array::ensure(obj);
    } catch (py::error_already_set&) {
      a = null_array();
    }
    if (!a && (py::isinstance<py::list>(obj) || py::isinstance<py::tuple>(obj))) {
      // A nested sequence NumPy cannot make an array of (ragged rows): its own reason, with
      // the argument's name.
      try {
        py::module_::import("numpy").attr("asarray")(obj);
      } catch (py::error_already_set& e) {
        if (e.matches(PyExc_ValueError))
          throw py::value_error(std::string(name) + " could not be converted to an array: " +
                                std::string(py::str(e.value())));
        throw;
      }
    }
    if (!a) {
      PyErr_Clear();
      throw py::type_error(std::string(name) + " must be array-like, got " +
                           std::string(py::str(py::type::handle_of(obj).attr("__name__"))));
    }
  }
  const char bo = a.dtype().byteorder();
  const bool little = little_endian();
  if ((bo == '>' && little) || (bo == '<' && !little)) {
    a = a.attr("astype")(a.dtype().attr("newbyteorder")("="));
  }
  return a;
}

Src source_type(const py::array& a, const char* name) {
  const py::dtype dt = a.dtype();
  const char kind = dt.kind();
  const auto size = dt.itemsize();
  if (kind == 'f') {
    if (size == 2) return Src::f16;
    if (size == 4) return Src::f32;
    if (size == 8) return Src::f64;
    if (size == static_cast<py::ssize_t>(sizeof(long double))) return Src::f128;
  } else if (kind == 'b') {
    return Src::b1;
  } else if (kind == 'i') {
    if (size == 1) return Src::i8;
    if (size == 2) return Src::i16;
    if (size == 4) return Src::i32;
    if (size == 8) return Src::i64;
  } else if (kind == 'u') {
    if (size == 1) return Src::u8;
    if (size == 2) return Src::u16;
    if (size == 4) return Src::u32;
    if (size == 8) return Src::u64;
  }
  throw py::type_error(std::string(name) + " must hold real numbers (bool, integer or float), got dtype " +
                       std::string(py::str(dt)));
}

DType compute_dtype(const py::array& pred, const char* name) {
  const Src s = source_type(pred, name);
  return (s == Src::f32 || s == Src::f16) ? DType::f32 : DType::f64;
}

std::string shape_str(const std::vector<std::int64_t>& s) {
  std::string r = "(";
  for (std::size_t i = 0; i < s.size(); ++i) {
    r += std::to_string(s[i]);
    if (s.size() == 1 || i + 1 < s.size()) r += ",";
    if (i + 1 < s.size()) r += " ";
  }
  return r + ")";
}

std::string shape_str(const py::array& a) {
  std::vector<std::int64_t> s(a.shape(), a.shape() + a.ndim());
  return shape_str(s);
}

std::vector<std::int64_t> broadcast_shapes(const py::array& a, const char* a_name,
                                           const py::array& b, const char* b_name) {
  const int nd = static_cast<int>(std::max(a.ndim(), b.ndim()));
  std::vector<std::int64_t> out(nd);
  for (int i = 0; i < nd; ++i) {
    const int ia = static_cast<int>(a.ndim()) - nd + i, ib = static_cast<int>(b.ndim()) - nd + i;
    const std::int64_t da = ia >= 0 ? a.shape(ia) : 1, db = ib >= 0 ? b.shape(ib) : 1;
    if (da != db && da != 1 && db != 1) {
      throw py::value_error(std::string(b_name) + " with shape " + shape_str(b) +
                            " cannot be broadcast with " + a_name + " with shape " + shape_str(a));
    }
    out[i] = da == 1 ? db : da;
  }
  return out;
}

void set_operand(Operand& op, const py::array& a, const std::vector<std::int64_t>& shape,
                 const char* name) {
  const int nd = static_cast<int>(shape.size());
  if (a.ndim() > nd) {
    throw py::value_error(std::string(name) + " with shape " + shape_str(a) +
                          " has more dimensions than the loss shape " + shape_str(shape));
  }
  op.data = static_cast<const char*>(a.data());
  op.src = source_type(a, name);
  op.itemsize = static_cast<int>(a.itemsize());
  const int off = nd - static_cast<int>(a.ndim());
  for (int d = 0; d < nd; ++d) {
    if (d < off) {
      op.strides[d] = 0;
      continue;
    }
    const std::int64_t n = a.shape(d - off);
    if (n != shape[d] && n != 1) {
      throw py::value_error(std::string(name) + " with shape " + shape_str(a) +
                            " does not broadcast to the loss shape " + shape_str(shape));
    }
    op.strides[d] = (n == 1) ? 0 : a.strides(d - off);
  }
}

namespace {

// [lo, hi) byte range an array touches.
std::pair<std::uintptr_t, std::uintptr_t> extent(const py::array& a) {
  auto lo = reinterpret_cast<std::uintptr_t>(a.data());
  auto hi = lo;
  if (a.size() == 0) return {lo, lo};
  for (py::ssize_t d = 0; d < a.ndim(); ++d) {
    const auto span = (a.shape(d) - 1) * a.strides(d);
    if (span < 0) lo += span;
    else hi += span;
  }
  return {lo, hi + a.itemsize()};
}

bool overlaps(const py::array& a, const py::array& b) {
  const auto ea = extent(a), eb = extent(b);
  if (ea.first >= ea.second || eb.first >= eb.second) return false;
  if (ea.second <= eb.first || eb.second <= ea.first) return false;
  // Bounds intersect: ask NumPy for the exact answer (interleaved views do not overlap).
  return py::module_::import("numpy").attr("shares_memory")(a, b).cast<bool>();
}

}  // namespace

py::array check_out(const py::handle& obj, const char* name, const std::vector<std::int64_t>& shape,
                    DType dtype, const std::vector<std::pair<py::array, const char*>>& inputs) {
  if (!py::isinstance<py::array>(obj)) {
    throw py::type_error(std::string(name) + " must be a numpy.ndarray, got " +
                         std::string(py::str(py::type::handle_of(obj).attr("__name__"))));
  }
  auto a = py::reinterpret_borrow<py::array>(obj);
  const char* want = dtype == DType::f32 ? "float32" : "float64";
  const bool dtype_ok = a.dtype().kind() == 'f' &&
                        a.itemsize() == (dtype == DType::f32 ? 4 : 8) &&
                        a.dtype().byteorder() != (little_endian() ? '>' : '<');
  if (!dtype_ok) {
    throw py::type_error(std::string(name) + " must have dtype " + want + " (the computation's dtype), got " +
                         std::string(py::str(a.dtype())));
  }
  std::vector<std::int64_t> s(a.shape(), a.shape() + a.ndim());
  if (s != shape) {
    throw py::value_error(std::string(name) + " must have shape " + shape_str(shape) + ", got " +
                          shape_str(s));
  }
  if (!a.writeable()) throw py::value_error(std::string(name) + " is read-only");
  for (const auto& in : inputs) {
    if (in.first && overlaps(a, in.first)) {
      throw py::value_error(std::string(name) + " overlaps the memory of " + in.second +
                            "; pass a separate buffer");
    }
  }
  return a;
}

namespace {

void* aligned_bytes(std::size_t align, std::size_t bytes) {
#if defined(_WIN32)
  void* p = _aligned_malloc(bytes, align);
  if (!p) throw std::bad_alloc();
  return p;
#else
  void* p = nullptr;
  if (posix_memalign(&p, align, bytes) != 0) throw std::bad_alloc();
  return p;
#endif
}

void free_aligned(void* p) {
#if defined(_WIN32)
  _aligned_free(p);
#else
  std::free(p);
#endif
}

// Output buffers of kCacheMin bytes or more come from a cache of the buffers that earlier
// results released (see docs/design.md, "Output buffers"): fresh memory from the OS is zeroed
// page by page on first touch, which costs a memory-bound loss about half again its own time
// (80 MB: 5-6 ms on a 2-core Xeon). A released buffer is kept while the cache holds at most
// limit bytes, the oldest freed first; a request takes the most recently released buffer of
// at least its (2 MiB-rounded) size and at most 5/4 of it.
//
// Fork: the mutex is held across fork() (pthread_atfork), so that a child never inherits it
// locked by a thread that does not exist there; the child forgets the cached buffers, whose
// pages it shares with the parent until one of them writes (reusing them would copy every
// page, which costs more than the zeroing the cache saves).
class BufferCache {
 public:
  static constexpr std::size_t kCacheMin = std::size_t{1} << 22;  // 4 MiB
  static constexpr std::size_t kAlign = std::size_t{1} << 21;     // a huge page

  static BufferCache& get() {
    static BufferCache* cache = make();  // never destroyed: arrays may outlive exit
    return *cache;
  }

  // A buffer of at least `bytes` (capacity: its size), or nullptr when the cache is off or
  // could never keep it: the caller allocates through NumPy then.
  void* take(std::size_t bytes, std::size_t& capacity) {
    const std::size_t rounded = (bytes + kAlign - 1) / kAlign * kAlign;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (rounded > limit_) return nullptr;
      for (std::size_t i = free_.size(); i-- > 0;) {
        const Buffer b = free_[i];
        if (b.bytes >= rounded && b.bytes - rounded <= rounded / 4) {
          free_.erase(free_.begin() + static_cast<std::ptrdiff_t>(i));
          cached_ -= b.bytes;
          capacity = b.bytes;
          return b.data;
        }
      }
    }
    void* data = aligned_bytes(kAlign, rounded);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    madvise(data, rounded, MADV_HUGEPAGE);  // advice only: failure changes nothing
#endif
    capacity = rounded;
    return data;
  }

  void give(void* data, std::size_t capacity) {
    std::vector<void*> drop;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (capacity <= limit_) {
        free_.push_back({data, capacity});
        cached_ += capacity;
      } else {
        drop.push_back(data);
      }
      trim(drop);
    }
    for (void* d : drop) free_aligned(d);
  }

  std::size_t set_limit(std::size_t limit) {
    std::vector<void*> drop;
    std::size_t previous;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      previous = limit_;
      limit_ = limit;
      trim(drop);
    }
    for (void* d : drop) free_aligned(d);
    return previous;
  }

  std::pair<std::size_t, std::size_t> usage() {
    std::lock_guard<std::mutex> lock(mutex_);
    return {cached_, free_.size()};
  }
  std::size_t limit() {
    std::lock_guard<std::mutex> lock(mutex_);
    return limit_;
  }

 private:
  static BufferCache* make() {
    auto* cache = new BufferCache();
#if !defined(_WIN32)
    pthread_atfork([] { get().mutex_.lock(); }, [] { get().mutex_.unlock(); },
                   [] {
                     BufferCache& c = get();
                     c.free_.clear();  // the parent's buffers: left to it (see above)
                     c.cached_ = 0;
                     c.mutex_.unlock();
                   });
#endif
    return cache;
  }
  struct Buffer {
    void* data;
    std::size_t bytes;
  };
  void trim(std::vector<void*>& drop) {  // with mutex_ held
    std::size_t k = 0;
    while (cached_ > limit_ && k < free_.size()) {
      cached_ -= free_[k].bytes;
      drop.push_back(free_[k].data);
      ++k;
    }
    free_.erase(free_.begin(), free_.begin() + static_cast<std::ptrdiff_t>(k));
  }
  std::mutex mutex_;
  std::vector<Buffer> free_;  // the most recently released last
  std::size_t cached_ = 0;
  std::size_t limit_ = std::size_t{256} << 20;  // 256 MiB
};

struct CachedBuffer {
  void* data;
  std::size_t capacity;
};

}  // namespace

py::array new_array(const std::vector<std::int64_t>& shape, DType dtype) {
  std::vector<py::ssize_t> s(shape.begin(), shape.end());
  const std::size_t item = dtype == DType::f32 ? sizeof(float) : sizeof(double);
  std::size_t bytes = item;
  for (auto d : shape) bytes *= static_cast<std::size_t>(d);
  void* data = nullptr;
  std::size_t capacity = 0;
  if (bytes >= BufferCache::kCacheMin) data = BufferCache::get().take(bytes, capacity);
  if (!data) {
    if (dtype == DType::f32) return py::array_t<float>(s);
    return py::array_t<double>(s);
  }
  CachedBuffer* owner;
  try {
    owner = new CachedBuffer{data, capacity};
  } catch (...) {
    free_aligned(data);
    throw;
  }
  // The array's base: returns the buffer to the cache when the last view of it goes.
  py::capsule base(owner, [](void* p) {
    auto* b = static_cast<CachedBuffer*>(p);
    BufferCache::get().give(b->data, b->capacity);
    delete b;
  });
  if (dtype == DType::f32) return py::array_t<float>(s, static_cast<float*>(owner->data), base);
  return py::array_t<double>(s, static_cast<double*>(owner->data), base);
}

std::size_t set_buffer_cache(std::size_t max_bytes) {
  return BufferCache::get().set_limit(max_bytes);
}

py::dict buffer_cache_info() {
  auto& cache = BufferCache::get();
  const auto use = cache.usage();
  py::dict d;
  d["max_bytes"] = cache.limit();
  d["cached_bytes"] = use.first;
  d["buffers"] = use.second;
  d["min_bytes"] = BufferCache::kCacheMin;
  return d;
}

void set_out_operand(OutOperand& op, const py::array& a, int ndim) {
  op.data = static_cast<char*>(const_cast<void*>(a.data()));
  for (int d = 0; d < ndim; ++d) op.strides[d] = a.strides(d);
}

int mean_rescale_exponent(double denom, DType dtype) {
  // Thresholds well inside each dtype's range, so that 1/denom and w/denom stay finite.
  const double tiny = dtype == DType::f32 ? std::ldexp(1.0, -100) : std::ldexp(1.0, -1000);
  if (!(denom > 0.0) || !(std::fabs(denom) < tiny)) return 0;
  return -std::ilogb(denom);
}

py::array scaled_weight(const py::array& weight, int k, DType dtype) {
  auto np = py::module_::import("numpy");
  const char* name = dtype == DType::f32 ? "float32" : "float64";
  py::object w = weight ? py::object(weight) : py::object(py::float_(1.0));
  // ldexp in float64 (2**k itself may exceed float64: k reaches 1074), then the compute dtype.
  py::object r = np.attr("ldexp")(np.attr("asarray")(w, py::arg("dtype") = "float64"), k);
  return np.attr("asarray")(r, py::arg("dtype") = name);
}

}  // namespace fastloss::bind

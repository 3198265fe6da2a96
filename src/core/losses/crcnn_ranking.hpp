// crcnn_ranking(scores s[..., K], target y; gamma, m_pos, m_neg, other_class, class_weight,
//               ignore_index)
//
// The ranking loss of dos Santos, Xiang and Zhou, "Classifying Relations by Ranking with
// Convolutional Neural Networks" (ACL 2015), eq. (10). With c the highest-scoring wrong class
// (the first index of the largest s_j, j != y and j != other_class), a = gamma (m_pos - s_y),
// b = gamma (m_neg + s_c):
//   l = softplus(a) + softplus(b)
//   dl/ds_y = -gamma sigmoid(a),   dl/ds_c = gamma sigmoid(b),   0 elsewhere
//   d2l/ds_y^2 = gamma^2 sigmoid(a) sigmoid(-a),   d2l/ds_c^2 = gamma^2 sigmoid(b) sigmoid(-b)
// (c changes only where two wrong scores tie, a set of measure zero; the derivatives are
// those of the piece that holds at the point.) Rows of other_class keep only the b term (the
// paper's treatment of the artificial class Other); the Other column never competes as c.
// A row without any wrong class (K = 1, or K = 2 with Other) has no b term.
// Class weight c_y, sample weight, NaN handling and ignore_index as multiclass_hinge.
// Parameters: [0] gamma, [1] has ignore_index, [2] ignore_index (binding), [3] m_pos,
// [4] m_neg, [5] has other_class, [6] other_class.
struct CrcnnRanking {
  template <int MODE, class T>
  static void rows(const RowBlock<T>& b) noexcept {
    using V = typename VecOf<T>::V;
    using Tr = Traits<V>;
    using VI = typename Tr::VI;
    constexpr bool kVArr = (MODE & kValueArray) != 0, kVSum = (MODE & kValueSum) != 0;
    constexpr bool kG = (MODE & kGrad) != 0, kH = (MODE & kHess) != 0;

    const std::int64_t K = b.K;
    const double gamma = b.params[0];
    const bool has_ig = b.params[1] != 0.0;
    const std::int64_t ig = ignore_index_param(b.params[2]);
    const double m_pos = b.params[3], m_neg = b.params[4];
    const bool has_other = b.params[5] != 0.0;
    const auto other = static_cast<std::int64_t>(b.params[6]);
    const double h0 = clip_hess(0.0, b.hess_policy, b.hess_floor);
    double vsum = 0.0;

    for (std::int64_t i = 0; i < b.rows; ++i) {
      const T* x = b.logits + i * K;
      T* g = kG ? b.grad + i * K : nullptr;
      T* h = kH ? b.hess + i * K : nullptr;
      const std::int64_t y = b.labels[i];
      if (ignored_row<kVArr, T>(y, has_ig, ig, g, h, K, kVArr ? b.value + i : nullptr)) continue;
      const double w = row_weight(b, i, y);
      const bool is_other = has_other && y == other;
      // The largest wrong score, over j != y and j != other_class.
      VI nanm{};
      T mx;
      const std::int64_t ncand = K - 1 - ((has_other && other != y) ? 1 : 0);
      std::int64_t c = row_argmax_except<T>(x, K, y, has_other ? other : -1, mx, nanm);
      if (c < 0 && ncand > 0) {  // every wrong score is -inf (or NaN): the first candidate
        c = 0;
        while (c == y || (has_other && c == other)) ++c;
      }
      double value = 0.0, gy = 0.0, hy = 0.0, gc = 0.0, hc = 0.0;
      if (!is_other) {
        const double a = gamma * (m_pos - static_cast<double>(x[y]));
        const double sa = sigmoid_d(a);
        value += softplus_d(a);
        gy = -gamma * sa;
        hy = gamma * gamma * sa * sigmoid_d(-a);
      }
      if (c >= 0) {
        const double bb = gamma * (m_neg + static_cast<double>(x[c]));
        const double sb = sigmoid_d(bb);
        value += softplus_d(bb);
        gc = gamma * sb;
        hc = gamma * gamma * sb * sigmoid_d(-bb);
      }
      value *= w;
      const double ds = w * b.gscale;
      if constexpr (kG) {
        fill_row<T>(g, K, T(0));
        g[y] = static_cast<T>(gy * ds);
        if (c >= 0) g[c] = static_cast<T>(gc * ds);
      }
      if constexpr (kH) {
        fill_row<T>(h, K, static_cast<T>(h0 * ds));
        h[y] = static_cast<T>(clip_hess(hy, b.hess_policy, b.hess_floor) * ds);
        if (c >= 0) h[c] = static_cast<T>(clip_hess(hc, b.hess_policy, b.hess_floor) * ds);
      }
      if (any_lane(nanm) || w != w) nan_row<T>(g, h, K, b.omit_nan, value);
      if constexpr (kVArr) b.value[i] = static_cast<T>(value);
      if constexpr (kVSum) vsum += value;
    }
    if constexpr (kVSum) *b.value_sum = vsum;
  }
};

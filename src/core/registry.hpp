// fastloss — the registry of compiled losses.
//
// One line per loss: X(python_name, C++ struct). Read by the kernel instantiation
// (kernels.inl), the bindings (loss ids and names) and show_config. The order fixes the
// loss ids; a new loss is appended at the end of its family.
//
// Elementwise losses take (pred-like, target) broadcast to one shape and give one value,
// gradient and Hessian per element.
#ifndef FASTLOSS_REGISTRY_HPP
#define FASTLOSS_REGISTRY_HPP

#define FASTLOSS_ELEMENTWISE_LOSSES(X) \
  X(squared_error, SquaredError)       \
  X(absolute_error, AbsoluteError)     \
  X(huber, Huber)                      \
  X(log_cosh, LogCosh)                 \
  X(sigmoid_cross_entropy, SigmoidCrossEntropy) \
  X(sigmoid_focal, SigmoidFocal)                 \
  X(sigmoid_power_cross_entropy, SigmoidPowerCrossEntropy) \
  X(hinge, Hinge)                               \
  X(squared_hinge, SquaredHinge)                \
  X(margin_ranking, MarginRanking)

// Multiclass losses take logits [..., K] and a target per row (class index or probability
// row) and give one value per row, a gradient and a diagonal Hessian per logit.
#define FASTLOSS_ROWWISE_LOSSES(X)                \
  X(softmax_cross_entropy, SoftmaxCrossEntropy) \
  X(softmax_focal, SoftmaxFocal)                \
  X(multiclass_hinge, MulticlassHinge)          \
  X(crcnn_ranking, CrcnnRanking)                \
  X(multilabel_softmax_cross_entropy, MultilabelSoftmaxCrossEntropy)

// Pairwise ranking losses take scores and relevances of documents in groups (queries) and
// sum a pair loss over the pairs of each group; a gradient and Hessian per document.
#define FASTLOSS_PAIRWISE_LOSSES(X)       \
  X(pairwise_logistic, PairwiseLogistic) \
  X(pairwise_hinge, PairwiseHinge)

#endif  // FASTLOSS_REGISTRY_HPP

// The loss headers themselves: compiled only inside an ISA translation unit (kernels.inl),
// where the lane types exist.
#if defined(FASTLOSS_IN_ISA_NAMESPACE) && !defined(FASTLOSS_LOSS_HEADERS_INCLUDED)
#define FASTLOSS_LOSS_HEADERS_INCLUDED
#include "losses/base.hpp"
#include "losses/squared_error.hpp"
#include "losses/absolute_error.hpp"
#include "losses/huber.hpp"
#include "losses/log_cosh.hpp"
#include "losses/sigmoid_cross_entropy.hpp"
#include "losses/sigmoid_focal.hpp"
#include "losses/sigmoid_power_cross_entropy.hpp"
#include "losses/hinge.hpp"
#include "losses/margin_ranking.hpp"
#include "losses/softmax_rows.hpp"
#include "losses/softmax_cross_entropy.hpp"
#include "losses/softmax_focal.hpp"
#include "losses/row_common.hpp"
#include "losses/multiclass_hinge.hpp"
#include "losses/crcnn_ranking.hpp"
#include "losses/multilabel_softmax_cross_entropy.hpp"
#include "losses/pairwise.hpp"
#endif

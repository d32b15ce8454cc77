// The price of a usage, exact to the nano-dollar (rounded up once per request).
#pragma once

#include "config/pricing.h"
#include "providers/provider.h"

namespace tollgate {

// nullopt: beyond any amount (a usage no provider reports; the caller bills otherwise).
inline std::optional<Money> CostOf(const Usage& u, const Rates& r) {
  CostAccumulator c;
  c.Add(u.input_tokens, r.input);
  c.Add(u.cache_read_tokens, r.cache_read);
  c.Add(u.cache_write_5m_tokens, r.cache_write_5m);
  c.Add(u.cache_write_1h_tokens, r.cache_write_1h);
  c.Add(u.output_tokens, r.output);  // reasoning tokens are inside output_tokens
  return c.Total();
}

}  // namespace tollgate

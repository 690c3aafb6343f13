"""The loyalty engine: pure functions of (rules, member, now): no clock, no state between
calls. The one piece of I/O is :func:`load_rules`, which reads the operator's rules file once
at start; everything after takes the resulting :class:`Rules` as an argument."""

from .config import DEFAULTS, CouponTemplate, Rules, RulesError, Tier, load_rules
from .models import Change, Coupon, Entry, Lot, Member, Order, Refusal

__all__ = ["DEFAULTS", "Change", "Coupon", "CouponTemplate", "Entry", "Lot", "Member", "Order",
           "Refusal", "Rules", "RulesError", "Tier", "load_rules"]

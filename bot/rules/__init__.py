"""The loyalty engine: pure functions of (rules, member, now). No I/O, no clock, no globals."""

from .config import DEFAULTS, CouponTemplate, Rules, RulesError, Tier, load_rules
from .models import Change, Coupon, Entry, Lot, Member, Order, Refusal

__all__ = ["DEFAULTS", "Change", "Coupon", "CouponTemplate", "Entry", "Lot", "Member", "Order",
           "Refusal", "Rules", "RulesError", "Tier", "load_rules"]

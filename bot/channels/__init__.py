"""Outgoing API clients: the Official Account (``wechat.py``) and WeCom (``wecom.py``)."""

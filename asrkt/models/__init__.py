"""asrkt.models"""

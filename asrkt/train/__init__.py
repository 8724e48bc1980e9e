"""asrkt.train"""

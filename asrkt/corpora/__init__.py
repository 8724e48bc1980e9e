"""asrkt.corpora"""

"""asrkt.transfer"""

"""asrkt.score"""

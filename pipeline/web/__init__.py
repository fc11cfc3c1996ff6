"""What runs in the browser: Flower, started with our settings (flower).
"""

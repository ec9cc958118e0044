"""What mail providers report back about delivered mail: SendGrid's event webhook (sendgrid.py), bounce
messages read from the bounce mailbox (bounces.py), and where both end, a recipient's delivery status
(deliveries.py)."""

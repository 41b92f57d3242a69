"""A generated mailbox for the retrieval-quality evaluation, and its labelled queries.

Deterministic (one seed). About 3,000 business e-mails: templated everyday mail from 24
families (invoices, reminders, meetings, proposals, shipping, support, hiring, travel, ...),
each with several phrasings of subject and body, filled with companies, people, months,
amounts and products, many with a quoted earlier message, a forwarded one or a signature (the
embed stage's cleaning removes those); plus the TARGETS, one e-mail each, about something
specific.

The QUERIES were written before any measurement, each as a person would type it when looking
for a target, deliberately in other words than the target's ("the invoice is overdue" for
"payment for March is still outstanding"). A query is answered by its target, or (for the few
generic queries) by any e-mail of the families named as relevant too. The queries were not
changed after seeing results.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

SEED = 20260101
START = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Mail:
    key: str  # "target:<name>" or "<family>:<n>"
    family: str
    subject: str
    body: str
    sender: str
    occurred_at: datetime
    outbound: bool = False


@dataclass(frozen=True)
class Query:
    text: str
    target: str  # a TARGETS key
    # families any of whose e-mails also answer the query (generic queries only)
    also_relevant: tuple[str, ...] = field(default=())


# --- the labelled queries (written first) -----------------------------------------------------

QUERIES: tuple[Query, ...] = (
    Query("the invoice is overdue", "march_outstanding", ("payment_overdue",)),
    Query("Halvorsen Marine is chasing us for an unpaid bill", "march_outstanding"),
    Query("shipment stuck at customs", "port_hold"),
    Query("a customer wants to cancel their subscription", "plan_ending"),
    Query("the coffee machine in the office is broken", "espresso_broken"),
    Query("can we get a discount on the yearly licence", "seat_pricing"),
    Query("our website went down overnight", "overnight_downtime"),
    Query("congratulations on the new baby", "baby_wishes"),
    Query("my flight got cancelled", "flight_scrapped"),
    Query("a new colleague joins the analytics team", "welcome_priya"),
    Query("lawyers need to check the contract renewal", "extension_lawyers"),
    Query("goods arrived broken", "crushed_boxes"),
    Query("we lost the deal to a competitor", "lost_bid"),
    Query("the wifi in the meeting room doesn't work", "wireless_down"),
    Query("please sign the non-disclosure agreement", "confidentiality_form"),
    Query("request to work from home on Fridays", "remote_fridays"),
    Query("the price of raw materials went up", "steel_costs"),
    Query("invitation to speak at a conference", "keynote_invite"),
    Query("the quarterly sales figures are below target", "q3_shortfall"),
    Query("customer is unhappy with the support they got", "support_frustration"),
    Query("the parking garage will be closed", "garage_works"),
    Query("someone forgot their laptop charger", "charger_left"),
    Query("GDPR request to delete personal data", "erase_records"),
    Query("the team lunch to celebrate the launch", "launch_meal"),
    Query("the translation of the user manual into Spanish", "manual_spanish"),
    Query("a supplier went bankrupt", "supplier_insolvent"),
    Query("phishing email pretending to be the CEO", "fake_ceo"),
    Query("the warehouse needs more staff for the holiday season", "seasonal_hiring"),
    Query("send me the slides from yesterday's presentation", "deck_request"),
    Query("the bank changed our account details", "new_iban"),
    Query("the printer is out of toner", "printer_cartridge"),
    Query("our office is moving to a new address", "relocation"),
    Query("a reference for a former employee", "reference_letter"),
    Query("the trade fair booth needs to be booked", "expo_stand"),
    Query("the software licence expires next month", "licence_lapse"),
    Query("thank you for the flowers", "flowers_thanks"),
    Query("the audit found problems in our expense reports", "audit_findings"),
    Query("the mobile app crashes when uploading photos", "app_crash"),
    Query("a visa is needed for the trip to India", "india_visa"),
    Query("the client wants the project finished sooner", "deadline_forward"),
)


# --- the targets: one e-mail each -------------------------------------------------------------

TARGETS: dict[str, tuple[str, str]] = {
    "march_outstanding": (
        "Statement of account - Halvorsen Marine",
        "Dear accounts team,\n\nAccording to our records the payment for March is still "
        "outstanding. The transfer of EUR 18,400 was due on 15 April and we have not received "
        "it. Could you look into this with your finance department?\n\nKind regards,\nIngrid "
        "Solberg\nCredit control, Halvorsen Marine AS",
    ),
    "port_hold": (
        "Delay in Rotterdam",
        "Hi both,\n\nOur container with the pump housings is being held by the port "
        "authorities in Rotterdam; clearance is pending because the certificate of origin is "
        "missing. The forwarder expects a release within four working days once the document is "
        "filed.\n\nRegards,\nMaarten",
    ),
    "plan_ending": (
        "Ending our plan at the end of the term",
        "Hello,\n\nAfter a lot of internal discussion we have decided not to continue with "
        "the platform once the current term ends in June. Please let us know what we need to "
        "do to close the account and export our data.\n\nBest,\nAstrid Lindqvist\nLindqvist "
        "Bakery",
    ),
    "espresso_broken": (
        "Kitchen appliance out of order",
        "Hi everyone,\n\nThe espresso maker in the third-floor kitchen has stopped working - it "
        "only blinks red. Facilities has been notified and a technician is coming on Wednesday. "
        "Until then the one on the ground floor still works.\n\nThanks,\nOffice management",
    ),
    "seat_pricing": (
        "Question about 50 seats",
        "Hi Tom,\n\nWe are close to a decision. Would you be able to reduce the per-user price "
        "if we commit to 50 seats for three years, paid annually up front? That would help us "
        "get it through procurement.\n\nCheers,\nChidi Okafor",
    ),
    "overnight_downtime": (
        "Incident report: production unavailable 02:00-04:10",
        "Team,\n\nBetween 02:00 and 04:10 our production environment and the public site were "
        "unreachable. Root cause: an expired TLS certificate on the load balancer. We renewed "
        "it and added monitoring for expiry dates.\n\nPostmortem meeting on Friday.\nOps",
    ),
    "baby_wishes": (
        "Warmest wishes",
        "Dear Marco,\n\nWhat wonderful news about your daughter's arrival! Wishing you and "
        "Giulia lots of sleep and happiness in the weeks ahead. Take all the time you need, we "
        "have everything covered here.\n\nWith love from the whole team",
    ),
    "flight_scrapped": (
        "Travel change for Thursday",
        "Hi,\n\nThe airline has scrapped my morning departure to Berlin, so I will not make "
        "the 10 o'clock workshop. I am rebooked on the evening connection and can join from "
        "Friday morning.\n\nSorry for the trouble,\nLena",
    ),
    "welcome_priya": (
        "Please welcome Priya",
        "Hello all,\n\nPlease give a warm welcome to Priya Nair, who will strengthen our data "
        "and reporting group from next week; her first day is the 14th. She comes from five "
        "years in retail forecasting.\n\nBest,\nHR",
    ),
    "extension_lawyers": (
        "Extension paperwork",
        "Hi Sam,\n\nBefore we sign the two-year extension of our agreement, our legal "
        "counsel wants to go through the liability and indemnity clauses. Expect their comments "
        "by the end of next week.\n\nBest regards,\nRuth",
    ),
    "crushed_boxes": (
        "Problem with order 88213",
        "Hello,\n\nThree of the cartons from order 88213 arrived crushed and the glassware "
        "inside was shattered. Photos attached. We need replacements before the weekend "
        "service.\n\nRegards,\nElena Castellano\nCastellano Foods",
    ),
    "lost_bid": (
        "Outcome of the Nordbahn tender",
        "Hi team,\n\nUnfortunately Nordbahn has awarded the maintenance tender to Vektor "
        "Systems; their offer was 12% cheaper. Thanks to everyone who worked on our submission. "
        "Let's do a short retrospective next week.\n\nJonas",
    ),
    "wireless_down": (
        "Board room connectivity",
        "Hi IT,\n\nNobody can get online in the board room today - laptops see the network but "
        "never get an address. We have client workshops there all afternoon.\n\nThanks,\nFiona",
    ),
    "confidentiality_form": (
        "Documents before our first workshop",
        "Dear Ms. Duarte,\n\nBefore we can share the product roadmap, we need your signature on "
        "the attached mutual confidentiality agreement. An electronic signature is "
        "fine.\n\nKind regards,\nPeter",
    ),
    "remote_fridays": (
        "Home office at the end of the week",
        "Hi Claire,\n\nWould it be possible for me to work remotely on the last day of each "
        "week from October on? My commute takes almost two hours and I can be fully available on "
        "chat and phone.\n\nThanks,\nNoah",
    ),
    "steel_costs": (
        "Price adjustment from 1 September",
        "Dear customer,\n\nThe cost of steel coil has risen by almost 20% since spring, and we "
        "can no longer absorb it. From 1 September our list prices for brackets and frames will "
        "increase by 8%.\n\nSincerely,\nBrandt Metallbau",
    ),
    "keynote_invite": (
        "Opening talk at FinOps Summit 2025",
        "Dear Dr. Adeyemi,\n\nWe would be honoured if you would give the opening talk at "
        "FinOps Summit in Amsterdam on 12 November. We cover travel and accommodation; the slot "
        "is 30 minutes plus questions.\n\nBest regards,\nThe programme committee",
    ),
    "q3_shortfall": (
        "Q3 numbers",
        "All,\n\nThird-quarter revenue came in at 3.1 million, 14% short of plan, mostly "
        "because two large renewals slipped into October. Pipeline for Q4 looks stronger. "
        "Details in the attached deck.\n\nMichael",
    ),
    "support_frustration": (
        "Very disappointed",
        "Hello,\n\nI have now opened three tickets about the export problem and each time I got "
        "a canned answer and the ticket was closed. This is not the service we pay for. Please "
        "escalate.\n\nAnnoyed regards,\nGreta Holm",
    ),
    "garage_works": (
        "Car park access in May",
        "Dear tenants,\n\nThe underground car park will be shut from 5 to 23 May for "
        "resurfacing. Please use the public lot on Mill Street; receipts can be "
        "reimbursed.\n\nBuilding management",
    ),
    "charger_left": (
        "Found in room 2.14",
        "Hi,\n\nAfter yesterday's workshop somebody left a USB-C power adapter for a notebook in "
        "room 2.14. It is now at the front desk.\n\nReception",
    ),
    "erase_records": (
        "Article 17 request",
        "To whom it may concern,\n\nUnder Article 17 of the General Data Protection Regulation "
        "I ask you to erase all information you hold about me, including my newsletter "
        "subscription and order history, and to confirm in writing.\n\nYours faithfully,\nTomasz "
        "Wojcik",
    ),
    "launch_meal": (
        "Friday noon - we made it!",
        "Hi all,\n\nVersion 3 is live! To celebrate, we have booked a table for the whole team "
        "at Osteria Bella on Friday at noon. The company pays.\n\nSee you there,\nAnna",
    ),
    "manual_spanish": (
        "Handbook localisation",
        "Hola Diego,\n\nWe need the operator handbook (about 80 pages) rendered into Spanish for "
        "the Madrid distributor by the end of the month. Could your agency quote for "
        "it?\n\nThanks,\nKatrin",
    ),
    "supplier_insolvent": (
        "Urgent: Kessler Components",
        "Hi,\n\nKessler Components filed for insolvency this morning; the administrator says "
        "open orders will not be delivered. We need a second source for the sensors within two "
        "weeks.\n\nPurchasing",
    ),
    "fake_ceo": (
        "Warning: suspicious payment request",
        "Everyone,\n\nSeveral colleagues received a message that looks like it comes from our "
        "managing director, asking for an urgent wire transfer and gift cards. It is a scam - "
        "do not reply and report it to IT.\n\nSecurity team",
    ),
    "seasonal_hiring": (
        "Temporary workers for November and December",
        "Hi Laura,\n\nOrder volume for the Christmas peak is forecast at 2.5x normal. The "
        "distribution centre will need around 40 temporary pickers and packers from mid "
        "November. Can the agency start recruiting?\n\nOperations",
    ),
    "deck_request": (
        "Yesterday's session",
        "Hi Omar,\n\nThanks again for the great session yesterday. Could you share the deck you "
        "presented? A few colleagues who could not attend would like to go through "
        "it.\n\nBest,\nSophie",
    ),
    "new_iban": (
        "Updated remittance instructions",
        "Dear partner,\n\nPlease note that from 1 July our receivables are paid to our new "
        "account at Nordea, IBAN SE45 5000 0000 0583 9825 7466. Payments to the old account will "
        "be returned.\n\nFinance, Sundqvist AB",
    ),
    "printer_cartridge": (
        "2nd floor printer",
        "Hi,\n\nThe big printer on the second floor keeps showing 'replace black cartridge' and "
        "prints blank pages. Do we have spares in the supply room?\n\nThanks,\nMia",
    ),
    "relocation": (
        "We are relocating",
        "Dear clients,\n\nFrom 3 March our team will work from our new premises at "
        "Harbour Square 7, 2nd floor. Phone numbers and e-mail addresses stay the same.\n\nBest "
        "regards,\nNordlicht Consulting",
    ),
    "reference_letter": (
        "Recommendation for Paul Meyer",
        "Dear Ms. Grant,\n\nPaul Meyer, who worked in our logistics department until last "
        "year, has applied for a role with your company and named me. I am happy to confirm he "
        "was reliable and well liked; I can talk on the phone this week.\n\nRegards,\nHelga "
        "Brandt",
    ),
    "expo_stand": (
        "Space at LogiMAT",
        "Hi,\n\nRegistration for exhibitors at LogiMAT closes on 30 November. Shall I reserve a "
        "24 square metre stand in hall 8 again? The price went up slightly to 9,600 "
        "EUR.\n\nBest,\nEvents",
    ),
    "licence_lapse": (
        "CAD seats renewal",
        "Hello,\n\nYour 25 CAD seats run out on 31 October. To avoid any interruption, please "
        "confirm the renewal order before the 15th.\n\nKind regards,\nYour account manager",
    ),
    "flowers_thanks": (
        "The bouquet",
        "Dear all,\n\nThe beautiful bouquet arrived this morning and brightened up our whole "
        "house. It was so kind of you to think of us.\n\nWarmly,\nBeatrice",
    ),
    "audit_findings": (
        "Internal audit results",
        "Hi,\n\nThe internal auditors reviewed travel claims for the first half year and found "
        "receipts missing for 11% of claims and several hotel bills above the policy limit. We "
        "need an action plan by month end.\n\nCompliance",
    ),
    "app_crash": (
        "Bug: iOS app closes on image upload",
        "Hi support,\n\nSince the latest update the iPhone app quits immediately whenever I try "
        "to attach a picture to a report. Reinstalling did not help. iOS 17.4, iPhone "
        "13.\n\nThanks,\nRaj",
    ),
    "india_visa": (
        "Entry documents for Bangalore",
        "Hi Mark,\n\nFor the Bangalore kick-off in February every traveller needs an e-business "
        "entry permit; applications take about a week. Please send me your passport scans by "
        "Friday.\n\nTravel desk",
    ),
    "deadline_forward": (
        "Go-live date",
        "Hi Ben,\n\nThe steering committee asked whether we could bring the go-live forward "
        "from June to early April, because of the trade show. What would that take in "
        "resources?\n\nRegards,\nIsabel",
    ),
}


# --- the everyday mail: families of templates --------------------------------------------------

COMPANIES = (
    "Halvorsen Marine",
    "Lindqvist Bakery",
    "Okafor Textiles",
    "Castellano Foods",
    "Brandt Metallbau",
    "Sundqvist AB",
    "Nordlicht Consulting",
    "Acme Logistics",
    "Bluewave Analytics",
    "Greenfield Farms",
    "Vektor Systems",
    "Meridian Health",
    "Kowalski & Sons",
    "Pacific Freight",
    "Atlas Robotics",
    "Sterling Legal",
    "Umbrella Health",
    "Citricos del Sur",
    "Northwind Traders",
    "Orion Software",
)
PEOPLE = (
    "Anna",
    "Ben",
    "Claire",
    "David",
    "Emma",
    "Felix",
    "Grace",
    "Hugo",
    "Isla",
    "Jack",
    "Karin",
    "Liam",
    "Maya",
    "Nils",
    "Olivia",
    "Pedro",
    "Rosa",
    "Stefan",
    "Tara",
    "Victor",
)
MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
PRODUCTS = (
    "consulting",
    "cloud hosting",
    "analytics dashboard",
    "maintenance",
    "training",
    "fleet tracking",
    "payroll module",
    "CRM integration",
)
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")
CITIES = ("Hamburg", "Lyon", "Milan", "Warsaw", "Madrid", "Oslo", "Vienna", "Porto")

# family -> (subjects, bodies); {company} {person} {month} {amount} {inv} {product} {day}
# {city} {n} are filled in.
FAMILIES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "invoice_sent": (
        ("Invoice {inv} - {company}", "Your invoice for {month}", "{company}: invoice {inv}"),
        (
            "Please find attached invoice {inv} for the {product} services delivered in "
            "{month}, amounting to EUR {amount}. Payment terms are 30 days net.",
            "Attached is our invoice {inv} covering {product} for {month}. The total is EUR "
            "{amount}; bank details are on the second page.",
            "Here is the bill for {month} ({product}), EUR {amount}, reference {inv}.",
        ),
    ),
    "payment_overdue": (
        ("Reminder: invoice {inv} is past due", "Overdue balance", "Second reminder - {inv}"),
        (
            "Our records show that invoice {inv} over EUR {amount} is now 30 days overdue. "
            "Please arrange payment at your earliest convenience.",
            "This is a friendly reminder that the amount of EUR {amount} for invoice {inv} "
            "has not been settled yet. If you have already paid, please ignore this message.",
            "We still have not received payment of invoice {inv} (EUR {amount}). Kindly "
            "settle the balance within seven days to avoid a late fee.",
        ),
    ),
    "payment_received": (
        ("Payment received - thank you", "Receipt for invoice {inv}", "Transfer confirmed"),
        (
            "We confirm receipt of EUR {amount} for invoice {inv}. Thank you for your prompt "
            "payment.",
            "Your transfer of EUR {amount} has arrived; invoice {inv} is now marked as paid.",
        ),
    ),
    "meeting_request": (
        ("Meeting on {day}?", "Catch-up next week", "Time for a call about {product}?"),
        (
            "Would you have 30 minutes on {day} to go through the {product} roadmap? I am "
            "free after 2 pm.",
            "Could we set up a call next week to discuss the next phase of the {product} "
            "project? {day} morning works best for me.",
            "I'd like to schedule a short sync with you and {person} about {product}. Does "
            "{day} at 11 suit you?",
        ),
    ),
    "meeting_reschedule": (
        ("Moving our {day} call", "New time for our meeting", "Reschedule?"),
        (
            "Apologies, I have a conflict on {day}. Can we move our call to the same time one "
            "day later?",
            "Something urgent came up - could we shift our {product} meeting by an hour on {day}?",
        ),
    ),
    "meeting_confirm": (
        ("Confirmed: {day} at 10", "See you on {day}", "Agenda for {day}"),
        (
            "Confirming our meeting on {day} at 10:00 in {city}. Agenda: status of {product}, "
            "budget, next steps.",
            "Great, {day} works. I will send a video link shortly. {person} will join as well.",
        ),
    ),
    "proposal": (
        ("Proposal for {product}", "Our offer for {company}", "Quote {inv}"),
        (
            "As discussed, attached is our proposal for the {product} project. The estimated "
            "fee is EUR {amount}, valid until the end of {month}.",
            "Please find our quote for {product}: EUR {amount} for the first phase, with an "
            "option to extend.",
        ),
    ),
    "contract_signed": (
        ("Signed contract", "Countersigned agreement - {company}", "Contract executed"),
        (
            "Attached is the countersigned services agreement for {product}. We look forward "
            "to working together.",
            "The agreement for {product} has been signed by both parties and is effective "
            "from 1 {month}.",
        ),
    ),
    "shipping_update": (
        ("Your order has shipped", "Delivery update for order {inv}", "Tracking number"),
        (
            "Good news: order {inv} left our warehouse in {city} today and should arrive "
            "within three working days.",
            "Your shipment {inv} is on its way; the courier will deliver on {day} between 8 "
            "and 12.",
        ),
    ),
    "support_ticket": (
        ("Ticket {inv}: login problem", "Question about {product}", "Support request {inv}"),
        (
            "Users in our {city} office cannot log in to the {product} portal since this "
            "morning; they get 'invalid session'. Can you check?",
            "How do I export the monthly report from the {product} module to Excel? I could "
            "not find it in the help pages.",
            "We see slow response times in {product} every {day} afternoon. Is there "
            "maintenance scheduled?",
        ),
    ),
    "support_resolved": (
        ("Ticket {inv} resolved", "Your request has been closed", "Fixed: {product} issue"),
        (
            "The issue you reported in ticket {inv} has been fixed in today's release. Please "
            "let us know if it comes back.",
            "We have applied a configuration change to your {product} account; the problem "
            "should be gone now.",
        ),
    ),
    "hiring": (
        ("Interview on {day}", "Application: {product} specialist", "Candidate shortlist"),
        (
            "Thank you for applying for the {product} specialist position. We would like to "
            "invite you to an interview on {day} in our {city} office.",
            "Attached are the CVs of the three shortlisted candidates. Could you review them "
            "before {day}?",
        ),
    ),
    "travel": (
        ("Hotel booking {city}", "Your trip to {city}", "Train tickets for {day}"),
        (
            "Your hotel in {city} is booked for two nights from {day}; the confirmation "
            "number is {inv}.",
            "I have reserved train tickets to {city} for {day} morning, returning the next "
            "evening.",
        ),
    ),
    "demo_followup": (
        ("Following up on the demo", "Next steps after our {product} demo", "Thanks for your time"),
        (
            "Thanks for joining the {product} demo on {day}. As promised, here are the "
            "recording and a trial link valid for 14 days.",
            "It was great to show you {product} yesterday. Shall we plan a pilot with your "
            "{city} team?",
        ),
    ),
    "newsletter": (
        ("{company} newsletter - {month}", "What's new in {month}", "Product update {month}"),
        (
            "In this issue: new dashboards in {product}, our customer event in {city}, and "
            "tips for year-end reporting.",
            "This month we released faster search, better exports and a refreshed {product} "
            "mobile view.",
        ),
    ),
    "report_shared": (
        ("Monthly report {month}", "KPI summary", "Report for {company}"),
        (
            "Attached is the {month} report: usage of {product} grew 6%, tickets fell 10%, "
            "and uptime was 99.95%.",
            "Please find the usage statistics for {month}. Active users are stable; details "
            "per team are in the appendix.",
        ),
    ),
    "intro": (
        ("Introduction: {person} <> {company}", "Connecting you two", "Intro"),
        (
            "I'd like to introduce {person}, who leads operations at {company}. I think you "
            "two should talk about {product}.",
            "Meet {person} from {company} - they are looking for help with {product}; I "
            "thought of you right away.",
        ),
    ),
    "it_notice": (
        ("Planned maintenance {day}", "Password expiry", "New VPN client"),
        (
            "The mail server will be restarted on {day} evening for updates; expect a short "
            "interruption around 21:00.",
            "Your password expires in 7 days. Please change it via the self-service portal.",
            "Please install the new VPN client before {day}; the old one stops working afterwards.",
        ),
    ),
    "event_invite": (
        ("Webinar: {product} best practices", "Join us in {city}", "Customer day {month}"),
        (
            "Join our free webinar on {day} where our experts share best practices for "
            "{product}. Register via the link below.",
            "We are hosting a customer day in {city} in {month} with talks, workshops and "
            "dinner. Save the date!",
        ),
    ),
    "budget": (
        ("Budget request {product}", "Approval needed", "Spend for {month}"),
        (
            "Could you approve EUR {amount} for the {product} rollout in {month}? The "
            "business case is attached.",
            "The {product} budget for {month} is approved; please raise the purchase order "
            "with finance.",
        ),
    ),
    "partnership": (
        ("Partnership idea", "Working together with {company}", "Referral programme"),
        (
            "We see a lot of overlap between our customers and {company}'s. Would you be "
            "open to a referral partnership around {product}?",
            "Following our chat in {city}, here is a draft of the reseller terms for {product}.",
        ),
    ),
    "marketing": (
        ("Campaign results {month}", "Case study draft", "Social media plan"),
        (
            "The {month} email campaign reached an open rate of 31% and brought 45 demo "
            "requests for {product}.",
            "Attached is the first draft of the {company} case study; please check the "
            "quotes and numbers.",
        ),
    ),
    "out_of_office": (
        ("Out of office", "Away until {day}", "Automatic reply"),
        (
            "I am out of the office until {day} with limited access to e-mail. For urgent "
            "matters please contact {person}.",
            "Thank you for your message. I am travelling to {city} and will reply when I am back.",
        ),
    ),
    "feedback": (
        ("How did we do?", "Quick survey about {product}", "Your feedback matters"),
        (
            "We would love to hear how your experience with {product} has been. The survey "
            "takes two minutes.",
            "Thanks for being a customer of {company}. Please rate the support you received "
            "last month.",
        ),
    ),
}

GREETINGS = ("Hi {person},", "Hello {person},", "Dear {person},", "Hi all,", "Good morning,")
SIGNATURES = (
    "Best regards,\n{sender}\n{company} | +44 20 7946 0{n:03d}",
    "Kind regards,\n{sender}",
    "Thanks,\n{sender}\n\n-- \n{sender}\n{company}\nwww.example.com",
    "Cheers,\n{sender}",
    "Saludos,\n{sender}\n{company}",
)
QUOTED = (
    "\n\nOn {day}, {person} <{lower}@example.com> wrote:\n> {earlier}\n> Thanks\n",
    "\n\n-----Original Message-----\nFrom: {person}\nSent: {day}\nSubject: {subject}\n\n"
    "{earlier}\n",
    "\n\n---------- Forwarded message ---------\nFrom: {person} <{lower}@example.com>\n"
    "Date: {day}\nSubject: {subject}\nTo: team@example.com\n\n{earlier}\n",
)


def generate(count: int = 3000, *, seed: int = SEED) -> list[Mail]:
    """`count` everyday e-mails plus every target, in a stable order."""
    rnd = random.Random(seed)
    mails: list[Mail] = []
    families = list(FAMILIES)
    for n in range(count):
        family = families[n % len(families)]
        subjects, bodies = FAMILIES[family]
        company = rnd.choice(COMPANIES)
        person = rnd.choice(PEOPLE)
        sender = rnd.choice(PEOPLE)
        values = {
            "company": company,
            "person": person,
            "month": rnd.choice(MONTHS),
            "amount": f"{rnd.randint(2, 90)},{rnd.randint(0, 999):03d}",
            "inv": f"INV-{rnd.randint(10000, 99999)}",
            "product": rnd.choice(PRODUCTS),
            "day": rnd.choice(DAYS),
            "city": rnd.choice(CITIES),
            "n": n % 1000,
            "sender": sender,
            "lower": person.lower(),
        }
        subject = rnd.choice(subjects).format(**values)
        text = rnd.choice(bodies).format(**values)
        body = (
            rnd.choice(GREETINGS).format(**values)
            + "\n\n"
            + text
            + "\n\n"
            + rnd.choice(SIGNATURES).format(**values)
        )
        if rnd.random() < 0.4:
            # an earlier message of another family, quoted or forwarded below
            other = FAMILIES[rnd.choice(families)]
            earlier = rnd.choice(other[1]).format(**values)
            body += rnd.choice(QUOTED).format(earlier=earlier, subject=subject, **values)
            if not subject.startswith(("Re:", "Fwd:")):
                subject = f"Re: {subject}"
        mails.append(
            Mail(
                key=f"{family}:{n}",
                family=family,
                subject=subject,
                body=body,
                sender=f"{sender.lower()}@{company.split()[0].lower()}.example",
                occurred_at=START + timedelta(hours=3 * n),
                outbound=rnd.random() < 0.3,
            )
        )
    for n, (name, (subject, body)) in enumerate(TARGETS.items()):
        mails.append(
            Mail(
                key=f"target:{name}",
                family="target",
                subject=subject,
                body=body,
                sender=f"sender{n}@target.example",
                occurred_at=START + timedelta(hours=3 * count + 5 * n),
            )
        )
    # the targets spread among the rest, deterministically
    random.Random(seed + 1).shuffle(mails)
    return mails


def relevant(query: Query, mails: list[Mail]) -> set[str]:
    """The keys of the e-mails that answer `query`."""
    keys = {f"target:{query.target}"}
    keys.update(m.key for m in mails if m.family in query.also_relevant)
    return keys
